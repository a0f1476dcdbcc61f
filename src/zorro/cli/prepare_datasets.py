"""``zorro prepare audioset|vggsound|kinetics-sounds|esc50``: prepared shards from the files
a dataset publishes plus the media a user downloaded.

Each command parses the annotation files as published (:mod:`zorro.data.annotations`),
finds every annotated clip's media file under ``--media-root`` by ``--name-template``
(repeatable; the first that finds a file wins; other media extensions are tried too), and
calls :func:`zorro.data.prepare.prepare_shards`. The prepared folder's ``dataset.json``
lists the annotated clips without a file (``missing``), the files that could not be decoded
(``unreadable``) and, under ``extra``, the annotation rows left out with file, line and
reason, so the exact set behind a result can be published with it. Each sample keeps its
annotation fields (YouTube id, start/end, split, fold, ...) in its ``meta``.

The decode, window and storage options are those of ``zorro prepare`` (``--duration``,
``--window``, ``--workers``, ...); the defaults here are each dataset's: 10 s windows (5 s
and audio only for ESC-50) at 16 kHz.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Sequence

logger = logging.getLogger("zorro.cli")

#: default media name templates per dataset, tried in order
DEFAULT_TEMPLATES = {
    "audioset": ("{ytid}_{start:06d}", "Y{ytid}", "{ytid}"),
    "vggsound": ("{ytid}_{start:06d}", "{ytid}"),
    "kinetics-sounds": ("{ytid}_{start:06d}_{end:06d}", "{ytid}"),
    "esc50": ("{filename}",),
}

#: template fields each dataset fills
TEMPLATE_FIELDS = {
    "audioset": ("id", "ytid", "start", "end", "split"),
    "vggsound": ("id", "ytid", "start", "end", "label", "split"),
    "kinetics-sounds": ("id", "ytid", "start", "end", "label", "split", "filename"),
    "esc50": ("id", "filename", "stem", "label", "fold", "target", "src_file", "take"),
}


def _templates(args: argparse.Namespace, dataset: str):
    from zorro.data.annotations import NameTemplate

    raw = args.name_template or list(DEFAULT_TEMPLATES[dataset])
    return [NameTemplate(t, TEMPLATE_FIELDS[dataset]) for t in raw]


def _run(args: argparse.Namespace, dataset: str, parsed, annotation_files: Sequence[str]) -> int:
    from zorro.cli.prepare import settings_from_args
    from zorro.data.annotations import MediaIndex, match_media
    from zorro.data.annotations.sources import prepare_inputs
    from zorro.data.prepare import prepare_shards

    templates = _templates(args, dataset)
    if parsed.records:  # a template that cannot format these records fails before any decoding
        templates[0].format(parsed.records[0])
    index = MediaIndex(Path(args.media_root))
    logger.info("%s: %d annotated clips, %d media files under %s", dataset, len(parsed.records), len(index), args.media_root)
    match = match_media(parsed.records, index, templates)
    inputs = prepare_inputs(dataset, parsed, match, clips=getattr(args, "clips", "trimmed"), templates=templates,
                            annotation_files=annotation_files, media_root=args.media_root)
    if not inputs.sources:
        raise ValueError(
            f"none of the {len(parsed.records)} annotated clips has a media file under {args.media_root} "
            f"(templates {[t.template for t in templates]}); check --media-root and --name-template"
        )
    info = prepare_shards(inputs.sources, args.out, workers=args.workers, **inputs.kwargs(), **settings_from_args(args))
    summary = {
        "dataset": dataset,
        "annotated": len(parsed.records),
        "rows_left_out": len(parsed.dropped),
        "missing_media": len(inputs.missing),
        "unreadable": len(info.get("unreadable", [])),
        "samples": info.get("num_samples"),
        "out": str(args.out),
    }
    logger.info("prepared %s", json.dumps(summary))
    print(json.dumps(summary))
    return 0


def _on_error(args: argparse.Namespace) -> str:
    return "skip" if args.skip_bad_rows else "raise"


def _cmd_audioset(args: argparse.Namespace) -> int:
    from zorro.data.annotations import read_audioset_labels, read_audioset_segments

    classes = read_audioset_labels(args.labels)
    parsed = read_audioset_segments(args.segments, classes, on_error=_on_error(args))
    return _run(args, "audioset", parsed, [*args.segments, args.labels])


def _cmd_vggsound(args: argparse.Namespace) -> int:
    from zorro.data.annotations import read_vggsound

    parsed = read_vggsound(args.csv, split=args.split, on_error=_on_error(args))
    return _run(args, "vggsound", parsed, [args.csv])


def _cmd_kinetics_sounds(args: argparse.Namespace) -> int:
    from zorro.data.annotations import kinetics_sounds_classes, read_class_list, read_kinetics_csv, scan_kinetics_tree

    classes = read_class_list(args.classes) if args.classes else kinetics_sounds_classes()
    if args.csv:
        parsed = read_kinetics_csv(args.csv, classes=classes, split=args.split, on_error=_on_error(args))
        return _run(args, "kinetics-sounds", parsed, [args.csv])
    parsed = scan_kinetics_tree(args.media_root, classes=classes)  # the tree is the annotation: files found as listed
    if not args.name_template:
        args.name_template = ["{filename}"]
    return _run(args, "kinetics-sounds", parsed, [])


def _cmd_esc50(args: argparse.Namespace) -> int:
    from zorro.data.annotations import read_esc50

    parsed = read_esc50(args.meta, esc10=args.esc10, on_error=_on_error(args))
    return _run(args, "esc50", parsed, [args.meta])


def _common(p: argparse.ArgumentParser, dataset: str, *, clips: bool = True) -> None:
    p.add_argument("--media-root", required=True, help="folder holding the downloaded media (searched recursively)")
    p.add_argument("--out", required=True, help="output folder of the prepared shards")
    p.add_argument("--name-template", action="append", metavar="T",
                   help=f"media file name relative to --media-root, a str.format pattern over {list(TEMPLATE_FIELDS[dataset])} "
                        f"(repeatable; the first that finds a file wins; other media extensions are tried). "
                        f"Default: {' then '.join(DEFAULT_TEMPLATES[dataset])}")
    p.add_argument("--skip-bad-rows", action="store_true",
                   help="leave out malformed annotation rows (counted, listed in dataset.json) instead of stopping at the first")
    if clips:
        p.add_argument("--clips", choices=("trimmed", "full"), default="trimmed",
                       help="trimmed: each file is the annotated window (usual downloads); full: files are whole videos "
                            "and the annotated start/end select the window")


def register(sub: argparse._SubParsersAction) -> None:
    """Add the dataset sub-commands to ``zorro prepare``'s sub-parsers."""
    from zorro.cli.prepare import add_prepare_options

    p = sub.add_parser("audioset", help="AudioSet from its segment CSVs and class_labels_indices.csv",
                       description="Prepared shards of AudioSet: segment CSVs (balanced/unbalanced/eval) as published, "
                                   "class ids from class_labels_indices.csv, multi-label.")
    p.add_argument("--segments", nargs="+", required=True, metavar="CSV", help="segment list(s), e.g. eval_segments.csv")
    p.add_argument("--labels", required=True, help="class_labels_indices.csv")
    _common(p, "audioset")
    add_prepare_options(p)
    p.set_defaults(func=_cmd_audioset, duration=10.0, sample_rate=16000)

    p = sub.add_parser("vggsound", help="VGGSound from vggsound.csv",
                       description="Prepared shards of one VGGSound split; class ids are the sorted label names of the whole csv.")
    p.add_argument("--csv", required=True, help="vggsound.csv (no header: ytid,start_seconds,label,split)")
    p.add_argument("--split", required=True, choices=("train", "test"))
    _common(p, "vggsound")
    add_prepare_options(p)
    p.set_defaults(func=_cmd_vggsound, duration=10.0, sample_rate=16000)

    p = sub.add_parser("kinetics-sounds", help="Kinetics-Sounds from a Kinetics-400 CSV or torchvision-style tree",
                       description="Prepared shards of the Kinetics-Sounds subset of Kinetics-400 (class list shipped with "
                                   "zorro, see docs/recipes.md; --classes for another). Give --csv (annotation) or neither "
                                   "(then --media-root is read as a split folder of class sub-folders).")
    p.add_argument("--csv", help="Kinetics-400 annotation CSV (label,youtube_id,time_start,time_end,split[,is_cc])")
    p.add_argument("--split", help="keep rows whose split column is this (e.g. train, val)")
    p.add_argument("--classes", help="class list file, one Kinetics-400 class name a line (default: the shipped list)")
    _common(p, "kinetics-sounds")
    add_prepare_options(p)
    p.set_defaults(func=_cmd_kinetics_sounds, duration=10.0, sample_rate=16000)

    p = sub.add_parser("esc50", help="ESC-50 from meta/esc50.csv (audio only, five folds)",
                       description="Prepared shards of ESC-50: every clip, with its fold in the sample meta "
                                   "(cross-validate with `zorro cv`).")
    p.add_argument("--meta", required=True, help="meta/esc50.csv")
    p.add_argument("--esc10", action="store_true", help="only the ESC-10 subset")
    _common(p, "esc50", clips=False)
    add_prepare_options(p)
    p.set_defaults(func=_cmd_esc50, duration=5.0, sample_rate=16000, video=False)
