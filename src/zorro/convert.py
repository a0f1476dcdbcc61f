"""Weight conversion from the ``zorro-pytorch`` seed's state-dict layout (SPEC section 3).

The mapping is declarative: :data:`SEED_RENAMES` renames one key to one key,
``to_q``/``to_kv`` pairs are concatenated into our fused ``to_qkv``, and
:data:`SEED_DROPPED` lists buffers the seed stores that we derive instead (checked, not
silently discarded: a non-zero LayerNorm ``beta`` or a non-Hann ``spec.window`` is refused).

=====================================  ======================================
seed key                               zorro key
=====================================  ======================================
``return_tokens``, ``fusion_tokens``   same
``attn_pool.norm.gamma``               ``attn_pool.norm.weight``
``attn_pool.to_{q,kv,out}.weight``     same
``audio_to_tokens.{1,2,3}.*``          ``audio_embed.{norm_in,proj,norm_out}.*``
``video_to_tokens.{1,2,3}.*``          ``video_embed.{norm_in,proj,norm_out}.*``
``layers.i.0.norm.gamma``              ``blocks.i.attn.norm.weight``
``layers.i.0.to_q`` + ``to_kv``        ``blocks.i.attn.to_qkv.weight`` (rows: q, k, v)
``layers.i.0.to_out.weight``           ``blocks.i.attn.to_out.weight``
``layers.i.1.0.gamma``                 ``blocks.i.ff.norm.weight``
``layers.i.1.1.weight``                ``blocks.i.ff.proj_in.weight``
``layers.i.1.3.weight``                ``blocks.i.ff.proj_out.weight``
``norm.gamma``                         ``norm.weight``
``*.beta``, ``spec.window``            dropped after checking (zero / Hann)
=====================================  ======================================
"""

from __future__ import annotations

import re
from dataclasses import fields
from typing import Mapping

import torch

from zorro.model_config import ZorroConfig

SEED_RENAMES: list[tuple[str, str]] = [
    (r"^return_tokens$", "return_tokens"),
    (r"^fusion_tokens$", "fusion_tokens"),
    (r"^attn_pool\.norm\.gamma$", "attn_pool.norm.weight"),
    (r"^attn_pool\.(to_q|to_kv|to_out)\.weight$", r"attn_pool.\1.weight"),
    (r"^audio_to_tokens\.1\.(weight|bias)$", r"audio_embed.norm_in.\1"),
    (r"^audio_to_tokens\.2\.(weight|bias)$", r"audio_embed.proj.\1"),
    (r"^audio_to_tokens\.3\.(weight|bias)$", r"audio_embed.norm_out.\1"),
    (r"^video_to_tokens\.1\.(weight|bias)$", r"video_embed.norm_in.\1"),
    (r"^video_to_tokens\.2\.(weight|bias)$", r"video_embed.proj.\1"),
    (r"^video_to_tokens\.3\.(weight|bias)$", r"video_embed.norm_out.\1"),
    (r"^layers\.(\d+)\.0\.norm\.gamma$", r"blocks.\1.attn.norm.weight"),
    (r"^layers\.(\d+)\.0\.to_out\.weight$", r"blocks.\1.attn.to_out.weight"),
    (r"^layers\.(\d+)\.1\.0\.gamma$", r"blocks.\1.ff.norm.weight"),
    (r"^layers\.(\d+)\.1\.1\.weight$", r"blocks.\1.ff.proj_in.weight"),
    (r"^layers\.(\d+)\.1\.3\.weight$", r"blocks.\1.ff.proj_out.weight"),
    (r"^norm\.gamma$", "norm.weight"),
]
SEED_QKV = re.compile(r"^layers\.(\d+)\.0\.(to_q|to_kv)\.weight$")
SEED_DROPPED = re.compile(r"(^|\.)beta$|^spec\.window$")


def convert_seed_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a ``zorro-pytorch`` state dict into this library's layout.

    Args:
        state_dict: the seed model's ``state_dict()`` (tensors).

    Returns:
        A new dict for :meth:`zorro.Zorro.load_state_dict` (strict).

    Raises:
        ValueError: a key no rule knows (listed), a ``to_q`` without its ``to_kv``, a
            non-zero ``beta``, or a ``spec.window`` that is not a Hann window.
    """
    out: dict[str, torch.Tensor] = {}
    qkv: dict[str, dict[str, torch.Tensor]] = {}
    unknown: list[str] = []
    for key, value in state_dict.items():
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"state dict entry {key!r} is a {type(value).__name__}, expected a tensor")
        if SEED_DROPPED.search(key):
            if key.endswith("beta") and value.abs().max() > 0:
                raise ValueError(f"{key} is not zero; this layout has no LayerNorm bias there and cannot represent it")
            if key == "spec.window":
                hann = torch.hann_window(value.numel(), dtype=value.dtype)
                if not torch.allclose(value, hann, atol=1e-6):
                    raise ValueError("spec.window is not a periodic Hann window; it cannot be converted")
            continue
        m = SEED_QKV.match(key)
        if m:
            qkv.setdefault(m.group(1), {})[m.group(2)] = value
            continue
        for pattern, target in SEED_RENAMES:
            if re.match(pattern, key):
                out[re.sub(pattern, target, key)] = value
                break
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(f"keys not in the zorro-pytorch layout: {unknown}")
    for layer, parts in sorted(qkv.items()):
        if set(parts) != {"to_q", "to_kv"}:
            raise ValueError(f"layer {layer} has {sorted(parts)}; both to_q and to_kv are needed")
        out[f"blocks.{layer}.attn.to_qkv.weight"] = torch.cat([parts["to_q"], parts["to_kv"]], dim=0)
    return out


def infer_seed_shape(state_dict: Mapping[str, torch.Tensor]) -> dict[str, int]:
    """Constructor arguments readable from a seed state dict: ``dim``, ``depth``,
    ``num_fusion_tokens``. Head counts cannot be read (only ``heads * dim_head``)."""
    if "return_tokens" not in state_dict or "fusion_tokens" not in state_dict:
        raise ValueError("not a zorro-pytorch state dict: 'return_tokens' / 'fusion_tokens' are missing")
    layers = {int(m.group(1)) for k in state_dict if (m := re.match(r"^layers\.(\d+)\.", k))}
    return {
        "dim": int(state_dict["return_tokens"].shape[-1]),
        "depth": len(layers),
        "num_fusion_tokens": int(state_dict["fusion_tokens"].shape[0]),
    }


#: Options of this library that a seed model keeps at the seed's behaviour (they may not be
#: passed to :func:`build_from_seed`): the front-end and positions are fixed to the seed's,
#: the rest are defaults of an audio-video model.
_NOT_SEED_OPTIONS = frozenset({
    "audio_frontend", "sample_rate", "fbank_num_mel_bins", "fbank_frame_length", "fbank_frame_shift",
    "audio_mean", "audio_std", "pos_embed", "mask_rule", "modalities",
})


def build_from_seed(cls, state_dict: Mapping[str, torch.Tensor], **seed_kwargs):
    """A ``cls`` (:class:`zorro.Zorro`) model computing the seed's function from a ``zorro-pytorch``
    state dict: the seed's power-spectrogram front-end, no positional embeddings, the seed's
    layer arithmetic, and the seed's pooling-mask defect fixed.

    Args:
        cls: the model class.
        state_dict: the seed model's ``state_dict()``.
        **seed_kwargs: the seed constructor's arguments (and ``attn_backend``). ``dim``,
            ``depth`` and ``num_fusion_tokens`` are read from the weights when not given;
            a given value that the weights contradict raises ``ValueError``.

    Raises:
        TypeError: an option of this library that the seed does not have.
        ValueError: the weights do not fit the arguments (loading is strict).
    """
    seed_names = {f.name for f in fields(ZorroConfig)} - _NOT_SEED_OPTIONS
    foreign = sorted(set(seed_kwargs) - seed_names)
    if foreign:
        raise TypeError(f"from_zorro_pytorch takes the seed's constructor arguments (and attn_backend); got {foreign}")
    inferred = infer_seed_shape(state_dict)
    for key, value in inferred.items():
        if key in seed_kwargs and seed_kwargs[key] != value:
            raise ValueError(f"{key}={seed_kwargs[key]} was given but the weights have {key}={value}")
    model = cls(**{**inferred, **seed_kwargs}, audio_frontend="spectrogram", pos_embed="none")
    n_return = state_dict["return_tokens"].shape[0]
    if n_return != model.max_return_tokens:
        raise ValueError(
            f"the weights hold {n_return} return tokens but return_token_types has {model.max_return_tokens} "
            f"({list(model.return_token_names)}); pass the seed's return_token_types"
        )
    try:
        model.load_state_dict(convert_seed_state_dict(state_dict), strict=True)
    except RuntimeError as err:
        raise ValueError(f"the zorro-pytorch weights do not fit the constructor arguments given: {err}") from None
    return model
