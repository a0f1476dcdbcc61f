"""``zorro prepare <dataset>``: prepared shards from the files a dataset publishes plus the
media a user downloaded, one sub-command per dataset of :mod:`zorro.data.registry`.

Each command streams the annotation files as published (the dataset module's reader),
finds every annotated clip's media file under ``--media-root`` by ``--name-template``
(repeatable; the first that finds a file wins; other media extensions are tried too), and
calls :func:`zorro.data.prepare.prepare_shards`. The prepared folder's ``missing.jsonl``
lists the annotated clips without a file, ``unreadable.jsonl`` the files that could not be
decoded and ``dropped_rows.jsonl`` the annotation rows left out, with file, line and
reason; ``dataset.json`` counts them, so the exact set behind a result can be published
with it. Each sample keeps its annotation fields (YouTube id, start/end, split, fold, ...)
in its ``meta``.

The decode, window and storage options are those of ``zorro prepare`` (``--duration``,
``--window``, ``--num-workers``, ...); the defaults (window length, sample rate, audio only)
are each dataset's, and each command's ``--help`` shows them. ``--dry-run`` stops after
the lookup: it writes the accounting and prints how many rows, clips found and missing, the
first missing names and the templates tried.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger("zorro.cli")


def _templates(args: argparse.Namespace, spec: Any, reader: Any) -> list:
    from zorro.data.annotations import NameTemplate

    raw = args.name_template or list(getattr(reader, "templates", None) or spec.templates)
    return [NameTemplate(t, spec.fields) for t in raw]


def _remove_if_empty(out: Path) -> None:
    try:
        out.rmdir()
    except OSError:
        pass


def _run(args: argparse.Namespace, spec: Any) -> int:
    from zorro.cli.prepare import check_parts, settings_from_args
    from zorro.data.annotations import MediaIndex
    from zorro.data.annotations.collect import collect
    from zorro.data.prepare import PrepareSettings

    check_parts(args)
    if args.dry_run and args.part is not None:
        logger.info("a dry run covers the whole annotation; --part %d --num-parts %d applies to the real run", args.part, args.num_parts)
    settings = settings_from_args(args)
    PrepareSettings(**settings)  # bad settings fail before the annotation is read
    reader = spec.open_reader(args, "skip" if args.skip_bad_rows else "raise")
    templates = _templates(args, spec, reader)
    index = MediaIndex(Path(args.media_root))
    logger.info("%s: %d media files under %s; reading %s", spec.name, len(index), args.media_root, ", ".join(reader.files) or "the tree")
    out = Path(args.out)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    clips = getattr(args, "clips", "trimmed")
    try:
        got = collect(reader, index, templates, spool_dir=out, clips=clips, keep_sources=not args.dry_run)
    except BaseException:
        if created:
            _remove_if_empty(out)
        raise
    counts = dict(got.counts)
    extra = {
        "dataset": spec.name,
        "annotation_files": got.files,
        "media_root": str(args.media_root),
        "name_templates": got.templates,
        "clips": clips,
        "annotated": counts["annotated"],
        "dropped_counts": got.dropped_counts,
        "filtered_counts": got.filtered_counts,
        "ambiguous_media_names": got.ambiguous,
    }
    try:
        return _finish(args, spec, got, out, created, counts, extra, settings, clips)
    finally:
        got.remove_spools()


def _finish(args, spec, got, out, created, counts, extra, settings, clips) -> int:
    from zorro.cli.prepare import print_summary
    from zorro.data.accounting import write_dry_run
    from zorro.data.prepare import PrepareSettings, prepare_shards, settings_record

    try:
        if args.dry_run:
            write_dry_run(out, labels=got.labels, multi_label=got.multi_label, counts={**counts, "sources": counts["annotated"]},
                          missing=got.missing_spool, dropped_rows=got.dropped_spool,
                          settings=settings_record(PrepareSettings(**settings)), extra=extra, move_lists=True)
            _log_dry_run(spec.name, counts, got, out)
            print(json.dumps({"dataset": spec.name, "dry_run": True, "rows": counts["rows"], "annotated": counts["annotated"],
                              "rows_left_out": counts["dropped_rows"], "filtered_rows": counts["filtered_rows"],
                              "found": counts["found"], "missing": counts["missing"], "first_missing": got.first_missing,
                              "name_templates": got.templates, "out": str(out)}))
            return 0
        if not got.sources:
            raise ValueError(
                f"none of the {counts['annotated']} annotated clips has a media file under {args.media_root} "
                f"(templates {got.templates}, e.g. looked for {got.first_missing[:3]}); check --media-root and --name-template "
                f"(--dry-run shows what is looked for in seconds)"
            )
        info = prepare_shards(got.sources, out, labels=got.labels, multi_label=got.multi_label, missing=got.missing_spool,
                              dropped_rows=got.dropped_spool, annotation_counts=counts, extra_info=extra,
                              index_fields=spec.index_fields, workers=args.num_workers, part=args.part, num_parts=args.num_parts,
                              **settings)
    except BaseException:
        got.remove_spools()
        if created and not any(out.iterdir()):
            _remove_if_empty(out)
        raise
    c = info.get("counts", {})
    summary = {
        "dataset": spec.name,
        "annotated": counts["annotated"],
        "rows_left_out": counts["dropped_rows"],
        "missing_media": counts["missing"],
        "unreadable": c.get("unreadable"),
        "samples": info.get("num_samples"),
        "out": str(out),
    }
    logger.info("prepared %s", json.dumps(summary))
    print_summary(summary, info)
    return 0


def _log_dry_run(name: str, counts: dict[str, int], got: Any, out: Path) -> None:
    lines = [
        f"dry run of {name}: nothing decoded; accounting written to {out}",
        f"  annotation rows read: {counts['rows']} (left out as unusable: {counts['dropped_rows']}, "
        f"not selected: {counts['filtered_rows']})",
        f"  annotated clips: {counts['annotated']}: media found for {counts['found']}, missing {counts['missing']}",
        f"  name templates tried, in order: {', '.join(got.templates)}",
    ]
    if got.first_missing:
        lines.append(f"  first names looked for without a file (template {got.templates[0]!r}): {', '.join(got.first_missing)}")
    logger.info("\n".join(lines))


def _common(p: argparse.ArgumentParser, spec: Any) -> None:
    p.add_argument("--media-root", required=True, help="folder holding the downloaded media (searched recursively)")
    p.add_argument("--out", required=True, help="output folder of the prepared shards")
    p.add_argument("--name-template", action="append", metavar="T",
                   help=f"media file name relative to --media-root, a str.format pattern over {list(spec.fields)} "
                        f"(repeatable; the first that finds a file wins; other media extensions are tried; {{start:06d}} "
                        f"truncates fractional seconds). Default: {' then '.join(spec.templates)}")
    p.add_argument("--skip-bad-rows", action="store_true",
                   help="leave out malformed annotation rows (counted, listed in dropped_rows.jsonl) instead of stopping at the first")
    if spec.clips:
        p.add_argument("--clips", choices=spec.clips, default=spec.clips[0],
                       help="trimmed: each file is the annotated window (usual downloads); full: files are whole videos "
                            "and the annotated start/end select the window")


def register(sub: argparse._SubParsersAction) -> None:
    """Add one sub-command per registered dataset to ``zorro prepare``'s sub-parsers."""
    from zorro.cli.prepare import add_prepare_options
    from zorro.data.registry import specs

    for spec in specs():
        defaults: dict[str, Any] = {"duration": spec.duration, "sample_rate": spec.sample_rate}
        if not spec.video:
            defaults["video"] = False
        p = sub.add_parser(spec.name, help=spec.summary,
                           description=f"{spec.description} Defaults: {spec.duration:g} s windows at {spec.sample_rate} Hz"
                                       f"{', audio only' if not spec.video else ''}. Protocol: {spec.protocol.summary}.")
        spec.add_arguments(p)
        _common(p, spec)
        add_prepare_options(p, defaults)
        p.set_defaults(func=lambda args, spec=spec: _run(args, spec), **defaults)
