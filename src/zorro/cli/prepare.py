"""``zorro prepare``: decode a manifest (or a folder-per-class tree) once into tar shards.

``zorro prepare --manifest FILE_OR_FOLDER --out DIR [options]`` calls
:func:`zorro.data.prepare.prepare_shards`; ``zorro prepare DATASET ...`` runs the dataset
commands that :mod:`zorro.cli.prepare_datasets` registers (AudioSet, VGGSound, ...), which take
the same shared options (:func:`add_prepare_options`).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
from pathlib import Path

logger = logging.getLogger("zorro.cli")

_MIB = 2**20


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v


def _mib_to_bytes(text: str) -> int:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a size in MiB, got {text!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"expected a positive size in MiB, got {text!r}")
    return max(1, int(round(v * _MIB)))


def add_prepare_options(parser: argparse.ArgumentParser) -> None:
    """Add the window / decode / storage / worker options shared by every ``zorro prepare``
    command. Each option's ``dest`` is the :class:`zorro.data.prepare.PrepareSettings` field
    of the same name (plus ``workers``); all default to None, meaning the PrepareSettings
    default, so ``parser.set_defaults(duration=10.0, ...)`` sets a command's own defaults."""
    g = parser.add_argument_group("window, decoding and storage")
    g.add_argument("--window", default=None, metavar="W",
                   help="clip windows per file: 'centre' (one centred window, default), 'even:N' (N evenly spaced) "
                        "or 'manifest' (the manifest's start/end)")
    g.add_argument("--duration", type=float, default=None, help="stored window length in seconds (default 2.0; longer "
                   "than the training clip allows temporal offsets when training)")
    g.add_argument("--num-frames", type=_positive_int, default=None, help="frames stored per window (default 8)")
    g.add_argument("--image-size", type=_positive_int, default=None, help="training crop size the shards are for (default 224)")
    g.add_argument("--store-size", type=_positive_int, default=None,
                   help="short side of the stored frames in pixels (default: image size * 8/7, 256 for 224)")
    g.add_argument("--sample-rate", type=_positive_int, default=None, help="stored audio rate in Hz (default 16000)")
    g.add_argument("--no-audio", dest="audio", action="store_const", const=False, default=None, help="store no audio")
    g.add_argument("--no-video", dest="video", action="store_const", const=False, default=None, help="store no frames")
    g.add_argument("--audio-format", choices=("wav", "flac"), default=None,
                   help="audio member codec: wav (16-bit PCM, default, fastest to read) or flac (lossless, smaller)")
    g.add_argument("--jpeg-quality", type=_positive_int, default=None, help="JPEG quality of stored frames, 1-100 (default 90)")
    g.add_argument("--backend", choices=("pyav", "torchcodec", "auto"), default=None, help="decoder backend (default pyav)")
    g.add_argument("--seek-mode", choices=("exact", "keyframe"), default=None, help="frame seeking (default exact)")
    g.add_argument("--fast-decode", dest="fast_decode", action="store_const", const=True, default=None,
                   help="approximate h264/HEVC decoding without the deblocking filter (see docs/data.md)")
    g.add_argument("--shard-samples", dest="samples_per_shard", type=_positive_int, default=None,
                   help="close a shard once it holds this many samples")
    g.add_argument("--shard-mb", dest="shard_bytes", type=_mib_to_bytes, default=None,
                   help="close a shard once it holds this many MiB (default 256 when --shard-samples is not given)")
    g.add_argument("--workers", type=_positive_int, default=None, help="decoding processes (default: all cores)")


def settings_from_args(args: argparse.Namespace) -> dict:
    """The :class:`~zorro.data.prepare.PrepareSettings` fields set on ``args`` (None = not
    given), ready as keyword arguments of :func:`~zorro.data.prepare.prepare_shards`."""
    from dataclasses import fields

    from zorro.data.prepare import PrepareSettings

    out = {f.name: getattr(args, f.name) for f in fields(PrepareSettings) if getattr(args, f.name, None) is not None}
    if "samples_per_shard" in out and "shard_bytes" not in out:
        out["shard_bytes"] = None  # only a sample limit when only that was asked for
    return out


def _cmd(args: argparse.Namespace) -> int:
    from zorro.data import LabelVocab, read_manifest, scan_folder
    from zorro.data.prepare import PrepareSource, prepare_shards

    if not args.manifest or not args.out:
        raise ValueError("zorro prepare needs --manifest FILE_OR_FOLDER and --out DIR (or a dataset command, see --help)")
    src = Path(args.manifest)
    if src.is_dir():
        entries = scan_folder(src)
    elif src.is_file():
        entries = read_manifest(src, root=args.root)
    else:
        raise ValueError(f"--manifest {str(src)!r} is neither a manifest file nor a folder-per-class tree")
    if not entries:
        raise ValueError(f"--manifest {str(src)!r} lists no media files")
    vocab = LabelVocab.from_labels(e.labels for e in entries)
    sources = [PrepareSource.from_entry(e) for e in entries]
    try:
        info = prepare_shards(
            sources,
            args.out,
            labels=list(vocab.names),
            multi_label=args.multi_label,
            extra_info={"manifest": str(src)},
            workers=args.workers,
            **settings_from_args(args),
        )
    except KeyboardInterrupt:
        logger.error("interrupted: finished shards are kept; run the same command again to resume")
        return 130
    summary = {"out": str(args.out), **info["counts"], "shards": len(info["shards"])}
    print(json.dumps(summary))
    if info["num_samples"] == 0:
        logger.error("no sample written: every source was unreadable (reasons in %s)", Path(args.out) / "dataset.json")
        return 1
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``prepare`` (and the dataset commands of :mod:`zorro.cli.prepare_datasets`, when
    present) to the ``zorro`` parser."""
    p = sub.add_parser(
        "prepare",
        help="decode media once into tar shards (WebDataset layout) for fast training",
        description="Decodes every file of a manifest (CSV/JSONL) or folder-per-class tree once, in a pool of "
                    "worker processes, into tar shards with an index each and OUT/dataset.json (see docs/shards.md). "
                    "Rerun the same command after an interruption: finished shards are kept.",
    )
    p.add_argument("--manifest", help="CSV/JSONL manifest or a folder-per-class tree (root/<class>/<file>)")
    p.add_argument("--out", help="output folder")
    p.add_argument("--root", default=None, help="folder relative manifest paths are resolved against (default: the manifest's)")
    p.add_argument("--multi-label", action="store_true", help="files may have several labels (multi-hot targets)")
    add_prepare_options(p)
    p.set_defaults(func=_cmd)
    try:
        datasets = importlib.import_module("zorro.cli.prepare_datasets")
    except ModuleNotFoundError as err:
        if err.name != "zorro.cli.prepare_datasets":
            raise
        return
    dsub = p.add_subparsers(dest="dataset", metavar="DATASET", required=False,
                            title="dataset commands", description="prepare a published dataset from its annotation files")
    datasets.register(dsub)
