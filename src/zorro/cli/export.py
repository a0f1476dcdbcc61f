"""``zorro export``: a ``from_pretrained`` folder -> an ONNX model or a ``torch.export`` program.

    zorro export --format onnx PRETRAINED_DIR model.onnx --audio-samples 16000 --video-shape 8 224 224
    zorro export --format torch-export PRETRAINED_DIR model.pt2 --audio-samples 16000

The graph runs the whole model, audio front-end included: inputs ``audio (b, samples)``
and/or ``video (b, C, T, H, W)``, output ``(b, r, D)``. Audio length and video shape are fixed
at export time; the batch is dynamic unless ``--static-batch``. Leave out ``--audio-samples``
or ``--video-shape`` for a video-only or audio-only graph. After writing, the file is run
(onnxruntime, or the exported program) against eager PyTorch on random inputs and the max
absolute error is logged; above ``--tolerance`` the command fails (``--no-verify`` skips it).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

logger = logging.getLogger(__name__)

FORMATS = ("onnx", "torch-export")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``export`` sub-command."""
    p = subparsers.add_parser(
        "export",
        help="export a pretrained folder to ONNX or a torch.export program for deployment",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--format", required=True, choices=FORMATS, help="onnx (.onnx) or torch-export (.pt2, torch.export.save)")
    p.add_argument("pretrained", help="folder written by save_pretrained (or a Hub repo id with the hub extra)")
    p.add_argument("output", type=Path, help="output file")
    p.add_argument("--audio-samples", type=int, metavar="N", help="waveform length in samples (omit for video-only)")
    p.add_argument("--video-shape", type=int, nargs=3, metavar=("T", "H", "W"), help="frames, height, width (omit for audio-only)")
    p.add_argument("--batch", type=int, default=1, help="batch size of a static graph and of the verification run (default 1)")
    p.add_argument("--static-batch", action="store_true", help="fix the batch size instead of a dynamic batch dimension")
    p.add_argument("--return-tokens", type=int, nargs="+", metavar="I", help="return token indices to output (default: all)")
    p.add_argument("--attn-backend", choices=("sdpa", "eager"), help="attention backend to trace (default: the saved one; flex does not export)")
    p.add_argument("--opset", type=int, help="ONNX opset version (default: the exporter's)")
    p.add_argument("--tolerance", type=float, default=1e-4, help="max abs error accepted by the verification (default 1e-4)")
    p.add_argument("--no-verify", action="store_true", help="skip running the exported file against eager PyTorch")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Execute ``zorro export``; returns the exit code."""
    import torch

    from zorro import Zorro
    from zorro.export import example_inputs, export_onnx, export_program, verify_onnx, verify_program

    if args.audio_samples is None and args.video_shape is None:
        raise ValueError("give --audio-samples N and/or --video-shape T H W: the exported graph needs an input")
    if args.batch < 1:
        raise ValueError(f"--batch must be >= 1, got {args.batch}")
    if not getattr(args, "verbose", False):  # the ONNX toolchain logs every graph pass at INFO
        for name in ("onnx_ir", "onnxscript", "torch.export"):
            logging.getLogger(name).setLevel(logging.WARNING)
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # "torchvision is not installed" notices
    overrides = {"attn_backend": args.attn_backend} if args.attn_backend else {}
    model = Zorro.from_pretrained(args.pretrained, **overrides)
    if model.config.attn_backend == "flex":
        model.set_attn_backend("sdpa")
        logger.info("flex attention does not export; tracing the sdpa backend (same function)")
    shapes = dict(audio_samples=args.audio_samples, video_shape=tuple(args.video_shape) if args.video_shape else None)
    dynamic = not args.static_batch
    indices = tuple(args.return_tokens) if args.return_tokens else None
    if args.format == "onnx":
        try:
            import onnx  # noqa: F401
            import onnxscript  # noqa: F401
        except ImportError:
            raise ValueError("--format onnx needs the export extra: pip install 'zorro[export]' (onnx, onnxscript, onnxruntime)") from None
        export_onnx(model, args.output, batch=args.batch, dynamic_batch=dynamic, return_token_indices=indices,
                    opset_version=args.opset, **shapes)
    else:
        program = export_program(model, batch=args.batch, dynamic_batch=dynamic, return_token_indices=indices, **shapes)
        args.output.parent.mkdir(parents=True, exist_ok=True)
        torch.export.save(program, str(args.output))
        logger.info("wrote torch.export program %s", args.output)
    if args.no_verify:
        return 0
    if args.format == "onnx":
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            logger.warning("onnxruntime is not installed: %s was written but not verified", args.output)
            return 0
    batches = [args.batch] if args.static_batch else sorted({args.batch, args.batch + 1})
    worst = 0.0
    for b in batches:
        inputs = example_inputs(model, batch=b, generator=torch.Generator().manual_seed(b), **shapes)
        if args.format == "onnx":
            err = verify_onnx(args.output, model, inputs, indices)
        else:
            err = verify_program(torch.export.load(str(args.output)), model, inputs, indices)
        logger.info("verified %s at batch %d: max |exported - eager| = %.3g", args.output, b, err)
        worst = max(worst, err)
    if not worst <= args.tolerance:
        raise ValueError(f"exported model differs from eager PyTorch by {worst:.3g} > tolerance {args.tolerance}")
    return 0
