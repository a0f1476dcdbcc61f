"""The Zorro model: one transformer over the tokens of every modality given and learned fusion tokens.

Shape letters: ``b`` batch, ``n_m`` tokens of modality ``m``, ``n_f`` fusion tokens, ``n`` all
tokens, ``r`` return tokens, ``D`` model width (``dim``). The default model has two
modalities, audio (mono waveforms ``(b, samples)``) and video (``(b, c, t, h, w)`` float
frames); ``ZorroConfig.modalities`` gives any others (see :mod:`zorro.modalities`).

The forward pass is layered so users reach what they need without surgery:

* :meth:`Zorro.forward_features` -- every given modality's tokenizer, the masked transformer
  and the final norm: the final token sequence and where each block sits in it.
* :meth:`Zorro.pool` -- the return tokens attend to that sequence.
* :meth:`Zorro.encode` -- both, returning named embeddings (one per modality given, plus
  ``fusion`` and ``global`` when configured) and the token sequences (:class:`ZorroOutput`).
* :meth:`Zorro.forward` -- the seed's interface: ``(b, r, D)``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from zorro.audio import AudioFrontend
from zorro.hub import load_pretrained, push_to_hub, save_pretrained
from zorro.layers import AttentionPlan, AttentionPool, FeedForward, LayerNorm, SelfAttention
from zorro.layers.attention import check_backend
from zorro.masks import FUSION, TokenLayout
from zorro.modalities import AudioTokenizer, ModalityTokens, VideoTokenizer, build_tokenizer, extra_input_names
from zorro.model_config import POS_EMBED_KINDS, SEED_RETURN_TOKEN_TYPES, ZorroConfig, _pair  # noqa: F401 (ZorroConfig and the constants are re-exported)
from zorro.tokens import TokenTypes

logger = logging.getLogger(__name__)


@dataclass
class ZorroFeatures:
    """Final (normed) token sequence of one forward pass and where each block sits in it.

    Attributes:
        tokens: ``(b, n, D)`` the blocks packed in ``layout`` order (``[audio | fusion |
            video]`` for the default model).
        layout: the blocks and their token counts.
        grids: modality name -> its token grid (``(freq, time)`` patches for audio,
            ``(T, H, W)`` tubelets for video, ``(L,)`` for text and sequences).
        padding: modality name -> ``(b, n_m)`` bool, True for real tokens, for the
            modalities given with a mask.
    """

    tokens: torch.Tensor
    layout: TokenLayout
    grids: dict[str, tuple[int, ...] | None] = field(default_factory=dict)
    padding: dict[str, torch.Tensor] = field(default_factory=dict)

    def modality(self, name: str | TokenTypes) -> torch.Tensor | None:
        """``(b, n_m, D)`` tokens of one block (a modality name or ``"fusion"``; a ``TokenTypes``
        works too), or None when the sequence has none of that modality."""
        name = name.name.lower() if isinstance(name, TokenTypes) else name
        if name not in self.layout.names:
            return None
        span = self.layout.span(name)
        if span.stop == span.start and name != FUSION:
            return None
        return self.tokens[:, span]

    @property
    def audio_grid(self) -> tuple[int, int] | None:
        """``(freq_patches, time_patches)`` of the ``audio`` modality, or None without it."""
        return self.grids.get("audio")

    @property
    def video_grid(self) -> tuple[int, int, int] | None:
        """``(T, H, W)`` tubelet grid of the ``video`` modality, or None without it."""
        return self.grids.get("video")


@dataclass
class ZorroOutput:
    """Named results of :meth:`Zorro.encode`.

    Attributes:
        embeddings: pooled outputs by name, each ``(b, D)``: one per modality given (o_A
            ``audio``, o_V ``video``, ``text``, ...), ``fusion`` (o_F) and ``global`` (o_G)
            -- those configured and computable from the inputs given. A name configured
            twice gets ``_1``, ``_2`` suffixes.
        tokens: block name -> final tokens ``(b, n_m, D)``: every modality given, and
            ``fusion`` (``(b, n_f, D)``).
        grids: modality name -> token grid (see :class:`ZorroFeatures`).
        padding: modality name -> ``(b, n_m)`` bool (True for real tokens) for the inputs
            given with a mask.
    """

    embeddings: dict[str, torch.Tensor]
    tokens: dict[str, torch.Tensor] = field(default_factory=dict)
    grids: dict[str, tuple[int, ...] | None] = field(default_factory=dict)
    padding: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def audio_tokens(self) -> torch.Tensor | None:
        """``(b, n_a, D)`` final audio tokens, or None without audio."""
        return self.tokens.get("audio")

    @property
    def video_tokens(self) -> torch.Tensor | None:
        """``(b, n_v, D)`` final video tokens, or None without video."""
        return self.tokens.get("video")

    @property
    def fusion_tokens(self) -> torch.Tensor:
        """``(b, n_f, D)`` final fusion tokens."""
        return self.tokens[FUSION]

    @property
    def audio_grid(self) -> tuple[int, int] | None:
        """``(freq_patches, time_patches)``, or None without audio."""
        return self.grids.get("audio")

    @property
    def video_grid(self) -> tuple[int, int, int] | None:
        """``(T, H, W)`` tubelet grid, or None without video."""
        return self.grids.get("video")


class Block(nn.Module):
    """One pre-norm Zorro layer: ``x = attn(x) + x; x = ff(x) + x``."""

    def __init__(self, dim: int, dim_head: int, heads: int, ff_mult: float) -> None:
        super().__init__()
        self.attn = SelfAttention(dim, dim_head=dim_head, heads=heads)
        self.ff = FeedForward(dim, mult=ff_mult)

    def forward(self, x: torch.Tensor, plan: AttentionPlan) -> torch.Tensor:
        """``(b, n, D) -> (b, n, D)``."""
        x = self.attn(x, plan) + x
        return self.ff(x) + x


def build_audio_frontend(config: ZorroConfig, modality: str = "audio") -> AudioFrontend:
    """The :class:`~zorro.audio.AudioFrontend` that the audio modality ``modality`` of a
    :class:`Zorro` with ``config`` uses: kind, analysis geometry (``sample_rate`` Hz,
    ``spec_*`` / ``fbank_*``), normalisation and SpecAugment settings. Its
    ``features(waveform (b, samples)) -> (b, F, T)`` are the raw features that
    :meth:`Zorro.prepare_audio_features` and ``encode(audio_features=...)`` take, so callers
    can cache them (or compute normalisation statistics) before a model exists."""
    spec = config.modality_specs().get(modality)
    if spec is None or spec["kind"] != "audio":
        raise ValueError(f"the model has no audio modality named {modality!r}; its modalities are {list(config.modality_specs())}")
    options = {k: v for k, v in spec.items() if k != "kind"}
    return AudioTokenizer(config.dim, **options).frontend


class Zorro(nn.Module):
    """Zorro, the masked multimodal transformer (Recasens et al., 2023).

    Every modality's tokens attend only to that modality, and learned fusion tokens attend to
    everything, in every layer; so no modality's representation depends on another.
    Return tokens pool the final tokens: a modality's return token sees that modality only
    (o_A, o_V, ...), FUSION the fusion tokens only, GLOBAL all of them.

    The constructor takes every argument of the ``zorro-pytorch`` seed with the same meaning
    and defaults (see :class:`ZorroConfig` for all options and their units), plus:

    * ``audio_frontend="fbank"`` (Kaldi log-mel, 128 bins, 25 ms / 10 ms at ``sample_rate``)
      or ``"spectrogram"`` (the seed's power spectrogram, ``spec_*`` arguments).
    * ``pos_embed="sincos"``: fixed sine-cosine embeddings of the token grids, so any
      audio length and any video size that patchifies works; ``"none"`` as in the seed.
    * ``attn_backend="sdpa"``: block-sparse fused attention; ``"eager"`` is the dense
      reference; ``"flex"`` uses FlexAttention (see :mod:`zorro.layers.attention`).
    * ``mask_rule="zorro"``: the attention rule above. ``"full"`` (every token sees every
      token) and ``"bottleneck"`` (MBT-style: each modality sees itself and the fusion
      tokens) are the baselines Zorro is compared with; see :mod:`zorro.masks`. Only
      ``"zorro"`` keeps the modality outputs modality-pure.
    * ``modalities``: the modality table, ``name -> {"kind": ..., **options}`` (built-in
      kinds ``audio``, ``video``, ``text``, ``sequence``, or your own registered with
      :func:`zorro.register_modality_kind`). Left out: audio and video from the flat options.

    Use :meth:`Zorro.from_zorro_pytorch` to load a ``zorro-pytorch`` state dict.
    """

    def __init__(self, dim: int | None = None, depth: int | None = None, *, config: ZorroConfig | None = None, **kwargs: Any) -> None:
        super().__init__()
        if config is None:
            if dim is None or depth is None:
                raise TypeError("Zorro needs dim and depth (or config=ZorroConfig(...))")
            config = ZorroConfig(dim=dim, depth=depth, **kwargs)
        elif dim is not None or depth is not None or kwargs:
            raise TypeError("pass either config=... or keyword arguments, not both")
        self.config = config
        c = config

        self.return_token_types = c.return_token_types
        self.max_return_tokens = len(c.return_token_types)
        self.modality_names: tuple[str, ...] = c.modality_names
        for name, spec in c.modality_specs().items():  # registered as `<name>_embed` (the default model's weight names)
            self.add_module(f"{name}_embed", build_tokenizer(name, spec, c.dim, c.pos_embed))
        self._extra_inputs = {name: extra_input_names(self.tokenizer(name)) for name in self.modality_names}
        self.fusion_tokens = nn.Parameter(torch.empty(c.num_fusion_tokens, c.dim))
        self.blocks = nn.ModuleList([Block(c.dim, c.dim_head, c.heads, c.ff_mult) for _ in range(c.depth)])
        self.norm = LayerNorm(c.dim)
        self.return_tokens = nn.Parameter(torch.empty(self.max_return_tokens, c.dim))
        self.attn_pool = AttentionPool(c.dim, dim_head=c.dim_head, heads=c.heads)
        self._grad_checkpointing = False
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise the learned tokens and linear layers of a new model.

        Learned tokens and linear weights: truncated normal, std 0.02; linear biases: zero
        (the ViT recipe). The seed draws its tokens from N(0, 1): the pooled output is
        ``attn_pool(...) + return_token``, so unit-scale return tokens make every clip's
        embedding nearly the same vector at the start and training crawls (measured on
        AV-digits). Loaded weights replace all of this.
        """
        nn.init.trunc_normal_(self.fusion_tokens, std=0.02)
        nn.init.trunc_normal_(self.return_tokens, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    # ------------------------------------------------------------------ the modality table

    def tokenizer(self, name: str) -> nn.Module:
        """The tokenizer module of modality ``name`` (registered as ``<name>_embed``)."""
        if name not in self.modality_names:
            raise ValueError(f"this model has no modality {name!r}; its modalities are {list(self.modality_names)}")
        return getattr(self, f"{name}_embed")

    @property
    def tokenizers(self) -> dict[str, nn.Module]:
        """``name -> tokenizer module`` for every modality, in sequence order."""
        return {name: getattr(self, f"{name}_embed") for name in self.modality_names}

    @property
    def return_token_names(self) -> tuple[str, ...]:
        """Output name of each return token (``"audio"``, ``"video"``, ``"fusion"``, ...)."""
        return self.config.return_token_names

    def _audio(self) -> AudioTokenizer:
        tok = self.tokenizers.get("audio")
        if not isinstance(tok, AudioTokenizer):
            raise ValueError(f"this model has no audio modality named 'audio'; its modalities are {list(self.modality_names)}")
        return tok

    def _video(self) -> VideoTokenizer:
        tok = self.tokenizers.get("video")
        if not isinstance(tok, VideoTokenizer):
            raise ValueError(f"this model has no video modality named 'video'; its modalities are {list(self.modality_names)}")
        return tok

    @property
    def audio_frontend(self) -> AudioFrontend | None:
        """The ``audio`` modality's front-end (None when the model has no audio modality)."""
        tok = self.tokenizers.get("audio")
        return tok.frontend if isinstance(tok, AudioTokenizer) else None

    @property
    def audio_patch_size(self) -> tuple[int, int] | None:
        """``(freq, time)`` patch of the ``audio`` modality (None without one)."""
        tok = self.tokenizers.get("audio")
        return tok.patch_size if isinstance(tok, AudioTokenizer) else None

    @property
    def video_patch_size(self) -> tuple[int, int, int] | None:
        """``(t, h, w)`` tubelet of the ``video`` modality (None without one)."""
        tok = self.tokenizers.get("video")
        return tok.patch_size if isinstance(tok, VideoTokenizer) else None

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_zorro_pytorch(cls, state_dict: Mapping[str, torch.Tensor], **seed_kwargs: Any) -> "Zorro":
        """Build a seed-compatible model from a ``zorro-pytorch`` state dict.

        Seed-compatible mode: the seed's power spectrogram front-end, no positional
        embeddings, the seed's layer arithmetic. The result computes the seed's function with
        the seed's pooling-mask defect fixed. Keys are mapped by
        :func:`zorro.convert.convert_seed_state_dict` and loaded strictly (see
        :func:`zorro.convert.build_from_seed`).

        Args:
            state_dict: the seed model's ``state_dict()``.
            **seed_kwargs: the seed constructor's arguments (``heads``, ``dim_head``,
                ``spec_*``, patch sizes, ``return_token_types``, ...). ``dim``, ``depth`` and
                ``num_fusion_tokens`` are read from the weights when not given.
                ``attn_backend`` may be added; other options of this library may not.
        """
        from zorro.convert import build_from_seed

        return build_from_seed(cls, state_dict, **seed_kwargs)

    def save_pretrained(self, directory: str, **kwargs: Any) -> Any:
        """Write ``model.safetensors`` and ``config.json`` into ``directory`` (see :mod:`zorro.hub`).

        Returns the folder path (or the commit URL with ``push_to_hub=True``).
        """
        return save_pretrained(self, directory, **kwargs)

    def push_to_hub(self, repo_id: str, **kwargs: Any) -> str:
        """Upload to the Hugging Face Hub (``hub`` extra); see :func:`zorro.hub.push_to_hub`."""
        return push_to_hub(self, repo_id, **kwargs)

    @classmethod
    def from_pretrained(cls, name_or_path: str, **kwargs: Any) -> "Zorro":
        """Rebuild a model saved by :meth:`save_pretrained`: strict loading, never unpickles.

        ``name_or_path`` is a local folder or a Hub repo id (``hub`` extra). Keyword
        arguments: ``device``, ``dtype``, ``attn_backend`` (the only model option that may be
        overridden), ``revision``, ``cache_dir``, ``token``, ``local_files_only``
        (see :func:`zorro.hub.load_pretrained`). A model with a modality kind of your own
        needs that kind registered first (:func:`zorro.register_modality_kind`).
        """
        return load_pretrained(cls, name_or_path, **kwargs)

    # ------------------------------------------------------------------ options

    @property
    def attn_backend(self) -> str:
        """Current attention backend name."""
        return self.config.attn_backend

    def set_attn_backend(self, name: str) -> "Zorro":
        """Switch the attention backend (``"sdpa"``, ``"eager"``, ``"flex"``); returns self.

        The backends compute the same function; only speed and memory differ.
        """
        self.config.attn_backend = check_backend(name)
        return self

    @property
    def grad_checkpointing(self) -> bool:
        """Whether training forwards recompute each layer's activations in backward."""
        return self._grad_checkpointing

    def set_grad_checkpointing(self, enabled: bool = True) -> "Zorro":
        """Turn activation (gradient) checkpointing of the transformer layers on or off; returns self.

        When on, a forward pass in training mode with gradients enabled keeps only each
        layer's input ``(b, n, D)`` and recomputes the layer's activations during backward
        (:func:`torch.utils.checkpoint.checkpoint`, non-reentrant): activation memory of the
        layers falls from ~13 ``(b, n, D)``-sized tensors per layer to about one, for one more
        forward pass of the layers in backward. The layers have no dropout, so the result
        and its gradients are unchanged. It is a run-time setting, not part of the
        configuration (not saved with the weights); evaluation and ``no_grad`` ignore it.
        """
        if not isinstance(enabled, bool):
            raise TypeError(f"set_grad_checkpointing takes True or False, got {enabled!r}")
        self._grad_checkpointing = enabled
        return self

    # ------------------------------------------------------------------ the audio and video modalities

    def _check_audio(self, audio: Any) -> torch.Tensor:
        return self._audio().check(audio)

    def _check_video(self, video: Any) -> torch.Tensor:
        return self._video().check(video)

    def audio_features(self, audio: torch.Tensor) -> torch.Tensor:
        """Front-end features of the ``audio`` modality cropped to whole patches:
        ``(b, samples) -> (b, F, T)`` float32.

        Features not filling a whole patch (the last frequency bins / frames) are cropped, as
        in the seed; this warns once. Raises ``ValueError`` when not even one patch fits.
        """
        return self._audio().features(audio)

    def prepare_audio_features(self, features: torch.Tensor) -> torch.Tensor:
        """Raw front-end features computed earlier -> what :meth:`audio_features` returns.

        ``features (b, F, T)`` as ``model.audio_frontend.features(waveform)`` gives them
        (e.g. cached once per clip, or augmented with :meth:`zorro.augment.ClipAugment.fbank`):
        normalised, SpecAugment-ed in training mode and cropped to whole patches. The model's
        output for them equals its output for the waveform (in eval mode, where no randomness
        is drawn).
        """
        return self._audio().prepare_features(features)

    def embed_audio(self, audio: torch.Tensor | None = None, *, features: torch.Tensor | None = None) -> tuple[torch.Tensor, tuple[int, int]]:
        """Audio tokens: ``(b, samples) -> (b, n_a, D)`` and the ``(freq, time)`` patch grid.

        Or, with ``features``, from raw front-end features ``(b, F, T)`` instead of the
        waveform (see :meth:`prepare_audio_features`).
        """
        out = self._audio()(audio, features=features)
        return out.tokens, out.grid

    def embed_video(self, video: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
        """Video tokens: ``(b, c, t, h, w) -> (b, n_v, D)`` and the ``(T, H, W)`` tubelet grid."""
        out = self._video()(video)
        return out.tokens, out.grid

    # ------------------------------------------------------------------ forward passes

    def _split_inputs(self, inputs: Mapping[str, Any]) -> dict[str, tuple[Any, dict[str, Any]]]:
        """``{name: (input, {extra suffix: value})}`` for every modality given, in table order."""
        known = {}
        for name in self.modality_names:
            known[name] = (name, None)
            for suffix in self._extra_inputs[name]:
                known[f"{name}_{suffix}"] = (name, suffix)
        unknown = sorted(k for k in inputs if k not in known)
        if unknown:
            raise TypeError(f"unexpected inputs {unknown}; this model takes {sorted(known)}")
        given: dict[str, tuple[Any, dict[str, Any]]] = {}
        for key, value in inputs.items():
            if value is None:
                continue
            name, suffix = known[key]
            entry = given.setdefault(name, (None, {}))
            if suffix is None:
                given[name] = (value, entry[1])
            else:
                entry[1][suffix] = value
        for name, (value, extras) in given.items():
            if value is None and "mask" in extras and len(extras) == 1:
                raise ValueError(f"{name}_mask was given without {name}")
        return {name: given[name] for name in self.modality_names if name in given}

    def _tokenize(self, name: str, value: Any, extras: dict[str, Any]) -> ModalityTokens:
        out = self.tokenizer(name)(value, **extras) if value is not None else self.tokenizer(name)(**extras)
        if isinstance(out, torch.Tensor):
            out = ModalityTokens(out, extras.get("mask"))
        if not isinstance(out, ModalityTokens):
            raise TypeError(f"the tokenizer of modality {name!r} returned {type(out).__name__}; expected a (b, n, dim) tensor or ModalityTokens")
        t = out.tokens
        if not isinstance(t, torch.Tensor) or t.dim() != 3 or t.shape[-1] != self.config.dim:
            raise ValueError(f"the tokenizer of modality {name!r} must give tokens (b, n, {self.config.dim}), got {tuple(getattr(t, 'shape', ()))}")
        if out.mask is not None and (out.mask.dtype != torch.bool or tuple(out.mask.shape) != tuple(t.shape[:2])):
            raise ValueError(f"the token mask of modality {name!r} must be (b, n) = {tuple(t.shape[:2])} bool, got "
                             f"{tuple(out.mask.shape)} {out.mask.dtype}")
        return out

    def forward_features(self, **inputs: Any) -> ZorroFeatures:
        """Run the given modalities' tokenizers and the masked transformer.

        Args:
            **inputs: one keyword per modality given (``audio=(b, samples)``,
                ``video=(b, c, t, h, w)``, ``text=(b, L)`` ids, ...; at least one), and the
                extra inputs their kinds take: ``<name>_mask`` ``(b, L)`` bool (True for real
                tokens) for ``text`` and ``sequence`` modalities, ``<name>_features`` (raw
                front-end features ``(b, F, T)``, instead of the waveform) for audio
                modalities (see :meth:`prepare_audio_features`).

        Returns:
            :class:`ZorroFeatures` with the final, normed ``(b, n, D)`` tokens.
        """
        given = self._split_inputs(inputs)
        if not given:
            wanted = " and/or ".join(f"{n}=..." for n in self.modality_names)
            raise ValueError(f"Zorro needs at least one input: {wanted}")
        embedded = {name: self._tokenize(name, value, extras) for name, (value, extras) in given.items()}
        sizes = {name: out.tokens.shape[0] for name, out in embedded.items()}
        batch = next(iter(sizes.values()))
        if any(size != batch for size in sizes.values()):  # (not a set: under torch.export the sizes are symbolic)
            raise ValueError("batch sizes differ: " + ", ".join(f"{name} {size}" for name, size in sizes.items()))
        ref = next(iter(embedded.values())).tokens
        fusion = self.fusion_tokens.to(ref.dtype).expand(batch, -1, -1)  # (b, n_f, D)
        layout = TokenLayout.packed(((name, out.tokens.shape[1]) for name, out in embedded.items()),
                                    self.config.num_fusion_tokens, first=self.modality_names[0])
        parts = {name: out.tokens for name, out in embedded.items()}
        parts[FUSION] = fusion
        x = torch.cat([parts[name] for name in layout.names], dim=1)  # (b, n, D) packed as the layout says
        padding = {name: out.mask for name, out in embedded.items() if out.mask is not None}
        plan = AttentionPlan(layout, self.config.attn_backend, x.device, self.config.mask_rule, padding)
        recompute = self._grad_checkpointing and self.training and torch.is_grad_enabled()
        for block in self.blocks:
            x = checkpoint(block, x, plan, use_reentrant=False) if recompute else block(x, plan)
        grids = {name: out.grid for name, out in embedded.items()}
        return ZorroFeatures(self.norm(x), layout, grids, padding)

    def select_return_tokens(
        self,
        return_token_indices: Sequence[int] | None = None,
        *,
        has_audio: bool = True,
        has_video: bool = True,
        present: Sequence[str] | None = None,
    ) -> list[int]:
        """Validate ``return_token_indices`` against the inputs present.

        ``present`` names the modalities given (by default: ``audio`` when ``has_audio``,
        ``video`` when ``has_video``). With ``None`` every return token the inputs can feed is
        selected (a modality's token is left out when that modality is missing). Explicit
        indices must be unique ints in ``[0, r)``; asking for a token whose modality is
        missing raises ``ValueError``.
        """
        if present is None:
            present = [n for n, has in (("audio", has_audio), ("video", has_video)) if has]
        names = self.return_token_names
        feedable = [self._feedable(n, present) for n in names]
        if return_token_indices is None:
            chosen = [i for i in range(len(names)) if feedable[i]]
            if not chosen:
                state = ", ".join(f"{m} {'given' if m in present else 'missing'}" for m in self.modality_names)
                raise ValueError(f"none of the return tokens {list(names)} can be computed from the inputs given ({state})")
            return chosen
        if isinstance(return_token_indices, (str, bytes)) or not isinstance(return_token_indices, Sequence):
            raise TypeError(f"return_token_indices must be a tuple of ints, got {return_token_indices!r}")
        chosen = list(return_token_indices)
        for i in chosen:
            if not isinstance(i, int) or isinstance(i, bool):
                raise TypeError(f"return_token_indices must hold ints, got {i!r}")
            if not 0 <= i < len(names):
                raise ValueError(f"return token index {i} is out of range: this model has {len(names)} return tokens (0..{len(names) - 1})")
        if len(set(chosen)) != len(chosen):
            raise ValueError(f"return_token_indices must be unique, got {tuple(chosen)}")
        if not chosen:
            raise ValueError("return_token_indices is empty; select at least one return token")
        for i in chosen:
            if not feedable[i]:
                missing = names[i]
                raise ValueError(
                    f"return token {i} ({self._token_label(i)}) attends to {missing} tokens, but no {missing} was given; "
                    f"pass {missing}=... or leave it out of return_token_indices"
                )
        return chosen

    def _token_label(self, i: int) -> str:
        token = self.return_token_types[i]
        return token.name if isinstance(token, TokenTypes) else token

    def _feedable(self, name: str, present: Sequence[str]) -> bool:
        return name not in self.modality_names or name in present

    def pool(self, features: ZorroFeatures, return_token_indices: Sequence[int] | None = None) -> torch.Tensor:
        """Attention pooling with the return tokens: ``(b, r, D)``.

        ``return_token_indices`` as in :meth:`select_return_tokens`.
        """
        layout = features.layout
        present = [n for n in layout.modalities if layout.count(n) > 0]
        chosen = self.select_return_tokens(return_token_indices, present=present)
        tokens = features.tokens
        queries = self.return_tokens[chosen].to(tokens.dtype).expand(tokens.shape[0], -1, -1)  # (b, r, D)
        names = [self.return_token_names[i] for i in chosen]
        backend = "eager" if self.config.attn_backend == "eager" else "sdpa"
        return self.attn_pool(queries, tokens, names, layout, backend, features.padding) + queries

    def encode(self, **inputs: Any) -> ZorroOutput:
        """Named embeddings and final token sequences (see :class:`ZorroOutput`).

        Args:
            **inputs: as for :meth:`forward_features`: one keyword per modality given
                (``audio=``, ``video=``, ``text=``, ...), any non-empty subset, plus their
                extra inputs (``text_mask=``, ``audio_features=``, ...).
        """
        features = self.forward_features(**inputs)
        present = [n for n in features.layout.modalities if features.layout.count(n) > 0]
        chosen = self.select_return_tokens(None, present=present)
        pooled = self.pool(features, chosen)  # (b, r, D)
        names: dict[str, torch.Tensor] = {}
        seen: dict[str, int] = {}
        for j, i in enumerate(chosen):
            base = self.return_token_names[i]
            k = seen.get(base, 0)
            seen[base] = k + 1
            names[base if k == 0 else f"{base}_{k}"] = pooled[:, j]
        tokens = {name: features.tokens[:, features.layout.span(name)] for name in features.layout.names}
        return ZorroOutput(embeddings=names, tokens=tokens, grids=features.grids, padding=features.padding)

    def forward(
        self,
        *,
        audio: torch.Tensor | None = None,
        video: torch.Tensor | None = None,
        return_token_indices: Sequence[int] | None = None,
        **inputs: Any,
    ) -> torch.Tensor:
        """The seed's interface: pooled outputs ``(b, r, D)``, one row per selected return token.

        Positions keep their meaning: ``out[:, j]`` is return token ``return_token_indices[j]``,
        or return token ``j`` of ``return_token_types`` when ``return_token_indices`` is None.

        Args:
            audio: ``(b, samples)`` mono waveform or None.
            video: ``(b, c, t, h, w)`` float frames or None.
            return_token_indices: which return tokens to output (unique ints); None outputs
                every configured return token, which needs every input they attend to.
            **inputs: the other modalities and extra inputs, as for :meth:`forward_features`.

        Raises:
            ValueError: a selected (or, with None, a configured) return token needs a modality
                that was not given; the message names the token, the missing input and the
                two ways to ask for less (``return_token_indices=...``, or :meth:`encode`
                for outputs by name).
        """
        inputs = {**{k: v for k, v in (("audio", audio), ("video", video)) if v is not None}, **inputs}  # a model without audio/video takes neither
        given = self._split_inputs(inputs)
        if given:  # validate the selection before any compute
            feedable = self.select_return_tokens(return_token_indices, present=list(given))
            if return_token_indices is None and len(feedable) < self.max_return_tokens:
                i = next(j for j in range(self.max_return_tokens) if j not in feedable)
                missing = self.return_token_names[i]
                raise ValueError(
                    f"return token {i} ({self._token_label(i)}) needs {missing}, but no {missing} was given; without "
                    f"return_token_indices forward() returns all {self.max_return_tokens} configured return tokens by "
                    f"position. Ask for less: return_token_indices={tuple(feedable)} (the tokens these inputs "
                    f"feed), or model.encode(...) for the outputs by name"
                )
        return self.pool(self.forward_features(**{k: v for k, v in inputs.items() if v is not None}), return_token_indices)
