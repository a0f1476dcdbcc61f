"""``zorro convert``: weights from other codebases -> a ``from_pretrained`` folder.

    zorro convert --from zorro-pytorch IN.pt OUT_DIR [--heads 8 --dim-head 64 ...] [--seed-config JSON]

``IN.pt`` is a ``zorro-pytorch`` model's ``state_dict()`` saved with ``torch.save`` (read with
``torch.load(weights_only=True)``: nothing in it is executed) or with safetensors. ``dim``,
``depth`` and ``num_fusion_tokens`` are read from the weights; every other constructor
argument of the seed defaults to the seed's default and can be given as a flag or in
``--seed-config`` (a JSON object, inline or a file path; flags win). The converted model is
checked against :class:`zorro.reference.DenseZorro` (the seed's arithmetic, fixed pooling
rule) on random inputs before anything is written (``--no-verify`` skips it).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

SOURCES = ("zorro-pytorch",)
VERIFY_TOLERANCE = 1e-4

# (flag, ZorroConfig field, type, help); the seed's constructor arguments.
_SEED_INT = [
    ("dim", "model width (read from the weights)"),
    ("depth", "layers (read from the weights)"),
    ("num-fusion-tokens", "fusion tokens (read from the weights)"),
    ("dim-head", "width of one attention head (seed default 64)"),
    ("heads", "attention heads (seed default 8)"),
    ("video-temporal-patch-size", "frames per tubelet (seed default 2)"),
    ("video-channels", "video channels (seed default 3)"),
    ("spec-n-fft", "spectrogram FFT size (seed default 128)"),
    ("spec-win-length", "spectrogram window length, samples (seed default 24)"),
    ("spec-hop-length", "spectrogram hop, samples (seed default win_length // 2)"),
    ("spec-pad", "spectrogram zero padding, samples (seed default 0)"),
    ("spec-aug-freq-mask", "SpecAugment max frequency mask, bins (seed default 80)"),
    ("spec-aug-time-mask", "SpecAugment max time mask, frames (seed default 80)"),
]
_SEED_FLOAT = [
    ("ff-mult", "feed-forward multiplier (seed default 4)"),
    ("spec-power", "spectrogram power (seed default 2)"),
    ("spec-aug-stretch-factor", "SpecAugment stretch factor (seed default 0.8)"),
]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``convert`` sub-command."""
    p = subparsers.add_parser(
        "convert",
        help="convert weights from another codebase (zorro-pytorch) to a from_pretrained folder",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--from", dest="source", required=True, choices=SOURCES, help="layout of the input weights")
    p.add_argument("input", type=Path, help="state dict: .pt/.pth/.bin (torch.save, read weights_only) or .safetensors")
    p.add_argument("output", type=Path, help="output folder (model.safetensors + config.json)")
    p.add_argument("--seed-config", help="the seed's constructor arguments as a JSON object, inline or a path to a .json file")
    seed = p.add_argument_group("seed constructor arguments (override --seed-config)")
    for flag, help_ in _SEED_INT:
        seed.add_argument(f"--{flag}", type=int, help=help_)
    for flag, help_ in _SEED_FLOAT:
        seed.add_argument(f"--{flag}", type=float, help=help_)
    seed.add_argument("--audio-patch-size", type=int, nargs="+", metavar="N", help="audio patch (freq, time), one or two ints (seed default 16)")
    seed.add_argument("--video-patch-size", type=int, nargs="+", metavar="N", help="video patch (h, w), one or two ints (seed default 16)")
    seed.add_argument("--spec-center", action=argparse.BooleanOptionalAction, default=None, help="centre STFT frames (seed default on)")
    seed.add_argument("--spec-pad-mode", help="STFT padding mode when centring (seed default reflect)")
    seed.add_argument(
        "--return-token-types", nargs="+", metavar="TYPE",
        help="return token types in the seed's order, names or ints (seed default AUDIO VIDEO FUSION)",
    )
    p.add_argument("--attn-backend", choices=("sdpa", "eager", "flex"), help="attention backend stored in config.json (default sdpa)")
    p.add_argument("--no-verify", action="store_true", help="skip the check against the dense seed-layout reference")
    p.set_defaults(func=run)


def _patch(values: list[int] | None, flag: str) -> int | tuple[int, int] | None:
    if values is None:
        return None
    if len(values) == 1:
        return values[0]
    if len(values) == 2:
        return (values[0], values[1])
    raise ValueError(f"--{flag} takes one or two ints, got {values}")


def _token_type(value: str) -> str | int:
    return int(value) if value.lstrip("-").isdigit() else value.upper()


def seed_kwargs_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The seed constructor arguments given by ``--seed-config`` and the flags (flags win)."""
    kwargs: dict[str, Any] = {}
    if args.seed_config:
        text = args.seed_config
        path = Path(text)
        if not text.lstrip().startswith("{") and path.is_file():
            text = path.read_text(encoding="utf-8")
        try:
            loaded = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"--seed-config is neither a JSON object nor a readable JSON file: {err}") from None
        if not isinstance(loaded, dict):
            raise ValueError(f"--seed-config must be a JSON object, got {type(loaded).__name__}")
        kwargs.update(loaded)
    for flag, _ in _SEED_INT + _SEED_FLOAT:
        value = getattr(args, flag.replace("-", "_"))
        if value is not None:
            kwargs[flag.replace("-", "_")] = value
    for name in ("audio_patch_size", "video_patch_size"):
        value = _patch(getattr(args, name), name.replace("_", "-"))
        if value is not None:
            kwargs[name] = value
    if args.spec_center is not None:
        kwargs["spec_center"] = args.spec_center
    if args.spec_pad_mode is not None:
        kwargs["spec_pad_mode"] = args.spec_pad_mode
    if args.return_token_types is not None:
        kwargs["return_token_types"] = [_token_type(t) for t in args.return_token_types]
    if args.attn_backend is not None:
        kwargs["attn_backend"] = args.attn_backend
    for key in ("audio_patch_size", "video_patch_size"):
        if isinstance(kwargs.get(key), list):
            kwargs[key] = tuple(kwargs[key])
    return kwargs


def verify_against_reference(model, seed_state: dict[str, torch.Tensor], seed_kwargs: dict[str, Any]) -> float:
    """Max |converted - DenseZorro| on random inputs (the seed's layout and arithmetic, fixed pooling).

    Returns the max absolute difference of the ``(1, r, dim)`` outputs; raises
    ``ValueError`` when it exceeds ``1e-4`` times the output scale.
    """
    import torch  # noqa: PLC0415  (only this command needs it: `zorro --help` starts without torch)

    from zorro.reference import DenseZorro

    cfg = model.config
    ref_kwargs = {k: v for k, v in seed_kwargs.items() if k != "attn_backend"}
    ref_kwargs.update(dim=cfg.dim, depth=cfg.depth, num_fusion_tokens=cfg.num_fusion_tokens, return_token_types=cfg.return_token_types)
    reference = DenseZorro(**ref_kwargs).eval()
    reference.load_state_dict(seed_state, strict=True)
    gen = torch.Generator().manual_seed(0)
    p1, p2 = model.audio_patch_size
    samples = model.audio_frontend.min_num_samples(2 * p2)
    tp, ph, pw = model.video_patch_size
    audio = torch.rand(1, samples, generator=gen) - 0.5
    video = torch.randn(1, cfg.video_channels, tp, ph, 2 * pw, generator=gen)
    model.eval()
    with torch.no_grad():
        ours = model(audio=audio, video=video)
        theirs = reference(audio=audio, video=video)
    err = float((ours - theirs).abs().max())
    scale = max(1.0, float(theirs.abs().max()))
    if not err <= VERIFY_TOLERANCE * scale:
        raise ValueError(f"converted model differs from the seed-layout reference by {err:.3g} (tolerance {VERIFY_TOLERANCE * scale:.3g})")
    return err


def run(args: argparse.Namespace) -> int:
    """Execute ``zorro convert``; returns the exit code."""
    from zorro import Zorro
    from zorro.hub import load_state_dict_file

    if args.source != "zorro-pytorch":  # argparse choices already enforce this
        raise ValueError(f"unknown source {args.source!r}; expected one of {SOURCES}")
    seed_kwargs = seed_kwargs_from_args(args)
    state = load_state_dict_file(args.input)
    logger.info("read %d tensors from %s", len(state), args.input)
    model = Zorro.from_zorro_pytorch(state, **seed_kwargs)
    if not args.no_verify:
        err = verify_against_reference(model, state, seed_kwargs)
        logger.info("verified against the dense seed-layout reference: max |diff| = %.3g", err)
    model.save_pretrained(str(args.output))
    c = model.config
    logger.info("wrote %s (dim=%d, depth=%d, heads=%d, dim_head=%d, outputs %s)", args.output, c.dim, c.depth, c.heads,
                c.dim_head, [t.name for t in c.return_token_types])
    return 0
