"""``zorro prepare``: decode a manifest (or a folder-per-class tree) once into tar shards.

``zorro prepare --manifest FILE_OR_FOLDER --out DIR [options]`` calls
:func:`zorro.data.prepare.prepare_shards`; ``zorro prepare DATASET ...`` runs the dataset
commands that :mod:`zorro.cli.prepare_datasets` builds from the dataset registry (AudioSet,
VGGSound, ...), which take the same shared options (:func:`add_prepare_options`);
``zorro prepare merge DIR`` writes the ``dataset.json`` of a folder prepared in parts.

Every form takes ``--dry-run`` (parse, match, write the accounting, print a summary, decode
nothing) and ``--part K --num-parts N`` (prepare one of N slices; see ``docs/shards.md``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
from pathlib import Path
from typing import Any

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


def _non_negative_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return v


def _mib_to_bytes(text: str) -> int:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a size in MiB, got {text!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"expected a positive size in MiB, got {text!r}")
    return max(1, int(round(v * _MIB)))


def add_prepare_options(parser: argparse.ArgumentParser, defaults: dict[str, Any] | None = None) -> None:
    """Add the window / decode / storage / worker / part options shared by every
    ``zorro prepare`` command. Each option's ``dest`` is the
    :class:`zorro.data.prepare.PrepareSettings` field of the same name (plus ``num_workers``,
    ``dry_run``, ``part``, ``num_parts``); all default to None, meaning the command's
    default: ``defaults`` (e.g. a dataset's ``{"duration": 10.0}``) over the PrepareSettings
    defaults. The same ``defaults`` must be set on the parser (``set_defaults``); the help
    shows them.

    Canonical names and their older aliases (both work): ``--num-workers`` (``--workers``)
    and ``--decoder`` (``--backend``), as the training config's ``data.num_workers`` and
    ``data.decoder``.
    """
    from dataclasses import fields

    from zorro.data.prepare import PrepareSettings

    d = {f.name: f.default for f in fields(PrepareSettings)}
    d.update(defaults or {})
    g = parser.add_argument_group("window, decoding and storage")
    g.add_argument("--window", default=None, metavar="W",
                   help=f"clip windows per file: 'centre' (one centred window), 'even:N' (N evenly spaced) "
                        f"or 'manifest' (the manifest's start/end) (default {d['window']})")
    g.add_argument("--duration", type=float, default=None, help=f"stored window length in seconds (default {d['duration']}; longer "
                   "than the training clip allows temporal offsets when training)")
    g.add_argument("--num-frames", type=_positive_int, default=None, help=f"frames stored per window (default {d['num_frames']})")
    g.add_argument("--image-size", type=_positive_int, default=None,
                   help=f"training crop size the shards are for (default {d['image_size']})")
    g.add_argument("--store-size", type=_positive_int, default=None,
                   help="short side of the stored frames in pixels (default: image size * 8/7, 256 for 224)")
    g.add_argument("--sample-rate", type=_positive_int, default=None, help=f"stored audio rate in Hz (default {d['sample_rate']})")
    g.add_argument("--no-audio", dest="audio", action="store_const", const=False, default=None, help="store no audio")
    g.add_argument("--no-video", dest="video", action="store_const", const=False, default=None,
                   help="store no frames" + (" (the default here: audio only)" if d.get("video") is False else ""))
    g.add_argument("--audio-format", choices=("wav", "flac"), default=None,
                   help="audio member codec: wav (16-bit PCM, default, fastest to read) or flac (lossless, smaller)")
    g.add_argument("--jpeg-quality", type=_positive_int, default=None,
                   help=f"JPEG quality of stored frames, 1-100 (default {d['jpeg_quality']})")
    g.add_argument("--decoder", "--backend", dest="backend", choices=("pyav", "torchcodec", "auto"), default=None,
                   help=f"decoder backend, as data.decoder in a training config (default {d['backend']}; --backend is the older name)")
    g.add_argument("--seek-mode", choices=("exact", "keyframe"), default=None, help=f"frame seeking (default {d['seek_mode']})")
    g.add_argument("--fast-decode", dest="fast_decode", action="store_const", const=True, default=None,
                   help="approximate h264/HEVC decoding without the deblocking filter (see docs/data.md)")
    g.add_argument("--shard-samples", dest="samples_per_shard", type=_positive_int, default=None,
                   help="close a shard once it holds this many samples")
    g.add_argument("--shard-mb", dest="shard_bytes", type=_mib_to_bytes, default=None,
                   help="close a shard once it holds this many MiB (default 256 when --shard-samples is not given)")
    g.add_argument("--num-workers", "--workers", dest="num_workers", type=_positive_int, default=None,
                   help="decoding processes, as data.num_workers in a training config (default: all cores; --workers is the older name)")
    r = parser.add_argument_group("checking and sharing the work")
    r.add_argument("--dry-run", action="store_true",
                   help="parse the annotation, look up every media file, write the accounting (dataset.json with counts, "
                        "missing.jsonl) and print a summary; decode nothing (exit 0 even when no file is found)")
    r.add_argument("--part", type=_non_negative_int, default=None, metavar="K",
                   help="prepare only part K (0-based) of --num-parts N: N machines (a Slurm array, a Kubernetes indexed job) "
                        "write their parts into the same --out; the last to finish writes dataset.json (see docs/shards.md)")
    r.add_argument("--num-parts", type=_positive_int, default=None, metavar="N", help="the number of parts (with --part)")


def settings_from_args(args: argparse.Namespace) -> dict:
    """The :class:`~zorro.data.prepare.PrepareSettings` fields set on ``args`` (None = not
    given), ready as keyword arguments of :func:`~zorro.data.prepare.prepare_shards`."""
    from dataclasses import fields

    from zorro.data.prepare import PrepareSettings

    out = {f.name: getattr(args, f.name) for f in fields(PrepareSettings) if getattr(args, f.name, None) is not None}
    if "samples_per_shard" in out and "shard_bytes" not in out:
        out["shard_bytes"] = None  # only a sample limit when only that was asked for
    return out


def check_parts(args: argparse.Namespace) -> None:
    """``--part`` and ``--num-parts`` come together, ``K < N``."""
    if (args.part is None) != (args.num_parts is None):
        raise ValueError("give --part K and --num-parts N together (K = 0 .. N-1)")
    if args.part is not None and args.part >= args.num_parts:
        raise ValueError(f"--part {args.part} is not below --num-parts {args.num_parts}: parts are numbered 0 .. {args.num_parts - 1}")


def print_summary(summary: dict[str, Any], info: dict[str, Any]) -> None:
    """Print a run's one-line JSON summary (with the part's progress when it is one part of
    a job whose other parts have not finished)."""
    if "part_counts" in info:  # a part's record: the job is not complete yet
        summary = {**summary, "part": info["part"], "num_parts": info["num_parts"], **{f"part_{k}": v for k, v in info["part_counts"].items()}}
    print(json.dumps(summary))


def parse_modalities(values: list[str]) -> dict[str, str]:
    """``["text=text", "imu=sequence"]`` (``--modality``) -> ``{"text": "text", "imu":
    "sequence"}``; a bare ``NAME`` is ``NAME=NAME`` (``--modality text``)."""
    from zorro.data.modalities import check_extra

    out: dict[str, str] = {}
    for value in values:
        name, _, kind = value.partition("=")
        name, kind = name.strip(), (kind.strip() or name.strip())
        if name in out:
            raise ValueError(f"--modality {name} is given twice")
        out[name] = kind
    return check_extra(out)


def _manifest_entries(src: Path, root: str | None, modalities: dict[str, str] | None = None):
    from zorro.data import read_manifest, scan_folder

    if src.is_dir():
        if modalities:
            raise ValueError(f"--modality needs a CSV/JSONL manifest with those columns; {str(src)!r} is a folder")
        return scan_folder(src)
    if src.is_file():
        return read_manifest(src, root=root, modalities=modalities)
    raise ValueError(f"--manifest {str(src)!r} is neither a manifest file nor a folder-per-class tree")


def _cmd(args: argparse.Namespace) -> int:
    from zorro.data import LabelVocab
    from zorro.data.accounting import write_dry_run
    from zorro.data.prepare import PrepareSettings, PrepareSource, prepare_shards, settings_record

    if not args.manifest or not args.out:
        raise ValueError("zorro prepare needs --manifest FILE_OR_FOLDER and --out DIR (or a dataset command, see --help)")
    check_parts(args)
    src = Path(args.manifest)
    modalities = parse_modalities(getattr(args, "modality", None) or [])
    entries = _manifest_entries(src, args.root, modalities)
    if not entries:
        raise ValueError(f"--manifest {str(src)!r} lists no media files")
    vocab = LabelVocab.from_labels(e.labels for e in entries)
    found, missing = [], []
    for row, e in enumerate(entries, 1):
        if os.path.exists(e.path):
            found.append(e)
        else:
            entry = {"path": str(e.path), "labels": list(e.labels), "manifest": f"{src}:{row}"}
            entry.update({k: v for k, v in (("start", e.start), ("end", e.end)) if v is not None})
            missing.append(entry)
    counts = {"rows": len(entries), "annotated": len(entries), "dropped_rows": 0, "filtered_rows": 0}
    extra = {"manifest": str(src)}
    if missing:
        logger.warning("%d of the %d files of %s do not exist (listed in missing.jsonl), e.g. %s", len(missing), len(entries), src,
                       [m["path"] for m in missing[:3]])
    if args.dry_run:
        settings = settings_record(PrepareSettings(**settings_from_args(args), modalities=modalities))
        write_dry_run(args.out, labels=list(vocab.names), multi_label=args.multi_label,
                      counts={**counts, "found": len(found), "missing": len(missing), "sources": len(entries)},
                      missing=missing, dropped_rows=None, settings=settings, extra=extra)
        logger.info("dry run: %d files listed, %d found, %d missing; nothing decoded (accounting in %s)", len(entries), len(found),
                    len(missing), args.out)
        print(json.dumps({"dry_run": True, "rows": len(entries), "found": len(found), "missing": len(missing),
                          "first_missing": [m["path"] for m in missing[:5]], "out": str(args.out)}))
        return 0
    if not found:
        raise ValueError(f"none of the {len(entries)} files of --manifest {str(src)!r} exists")
    sources = [PrepareSource.from_entry(e) for e in found]
    try:
        info = prepare_shards(
            sources, args.out, labels=list(vocab.names), multi_label=args.multi_label, missing=missing, annotation_counts=counts,
            extra_info=extra, workers=args.num_workers, part=args.part, num_parts=args.num_parts, modalities=modalities,
            **settings_from_args(args),
        )
    except KeyboardInterrupt:
        logger.error("interrupted: finished shards are kept; run the same command again to resume")
        return 130
    if "counts" in info:
        print_summary({"out": str(args.out), **info["counts"], "shards": len(info["shards"])}, info)
        if info["num_samples"] == 0:
            logger.error("no sample written: every source was unreadable (reasons in %s)", Path(args.out) / "unreadable.jsonl")
            return 1
    else:
        print_summary({"out": str(args.out)}, info)
    return 0


def _cmd_merge(args: argparse.Namespace) -> int:
    from zorro.data.accounting import merge_parts

    info = merge_parts(args.dir)
    print(json.dumps({"out": str(args.dir), **info["counts"], "shards": len(info["shards"]), "num_parts": info["parts"]["num_parts"]}))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``prepare`` (with ``merge`` and the dataset commands of
    :mod:`zorro.cli.prepare_datasets`) to the ``zorro`` parser."""
    p = sub.add_parser(
        "prepare",
        help="decode media once into tar shards (WebDataset layout) for fast training",
        description="Decodes every file of a manifest (CSV/JSONL) or folder-per-class tree once, in a pool of "
                    "worker processes, into tar shards with an index each and OUT/dataset.json (see docs/shards.md). "
                    "Rerun the same command after an interruption: finished shards are kept. Published datasets have "
                    "their own commands (below); `zorro prepare merge DIR` finishes a folder prepared in parts.",
    )
    p.add_argument("--manifest", help="CSV/JSONL manifest or a folder-per-class tree (root/<class>/<file>)")
    p.add_argument("--out", help="output folder")
    p.add_argument("--root", default=None, help="folder relative manifest paths are resolved against (default: the manifest's)")
    p.add_argument("--multi-label", action="store_true", help="files may have several labels (multi-hot targets)")
    p.add_argument("--modality", action="append", default=[], metavar="NAME=KIND",
                   help="store the manifest column NAME as an extra modality of KIND 'text' (the string, member NAME.txt) or "
                        "'sequence' (the path of a .npy (steps, features) file, member NAME.npy); repeat for several; "
                        "an empty cell: the clip lacks it (see docs/data.md)")
    add_prepare_options(p)
    p.set_defaults(func=_cmd)
    dsub = p.add_subparsers(dest="dataset", metavar="DATASET", required=False,
                            title="dataset commands", description="prepare a published dataset from its annotation files")
    m = dsub.add_parser("merge", help="write dataset.json of a folder prepared in parts (--part/--num-parts)",
                        description="Checks that every part of a job has finished (naming any that has not), that the parts "
                                    "agree on sources and settings and cover the annotation, and writes OUT/dataset.json with "
                                    "missing.jsonl, unreadable.jsonl, ... The last part to finish does this itself.")
    m.add_argument("dir", help="the folder the parts wrote into")
    m.set_defaults(func=_cmd_merge)
    try:
        datasets = importlib.import_module("zorro.cli.prepare_datasets")
    except ModuleNotFoundError as err:
        if err.name != "zorro.cli.prepare_datasets":
            raise
        return
    datasets.register(dsub)
