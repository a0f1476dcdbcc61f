"""``zorro pretrain``, ``zorro train``, ``zorro evaluate``, ``zorro embed`` and ``zorro demo``."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import yaml

logger = logging.getLogger("zorro.cli")


# ---------------------------------------------------------------------------- config handling


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``["lr=0.001", "model.dim=128"]`` -> nested dict; values are parsed as YAML scalars."""
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ValueError(f"--set expects KEY=VALUE, got {pair!r}")
        key, raw = pair.split("=", 1)
        value = yaml.safe_load(raw)
        if isinstance(value, str):  # YAML 1.1 reads "3e-4" as a string; numbers are meant
            try:
                value = float(value)
            except ValueError:
                pass
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Recursive dict merge (``extra`` wins)."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def load_config(path: str | None, overrides: list[str], fixed: dict[str, Any] | None = None) -> dict[str, Any]:
    """Read a YAML config (optional), apply ``--set`` overrides, then ``fixed`` values (a
    nested dict like the config; ``None`` values, options not given, are left out)."""
    data: dict[str, Any] = {}
    if path:
        text = Path(path).read_text()
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise ValueError(f"{path}: not valid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise ValueError(f"{path}: a config file must hold a mapping, got {type(data).__name__}")
    data = merge(data, parse_overrides(overrides))
    return merge(data, _given(fixed or {}))


def _given(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` without ``None`` entries (recursively) and without sections left empty."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            value = _given(value)
            if value:
                out[key] = value
        elif value is not None:
            out[key] = value
    return out


def add_config_file_args(p: argparse.ArgumentParser) -> None:
    """Add ``--config/-c`` (a YAML training config) and repeatable ``--set SECTION.KEY=VALUE``
    overrides (``args.config``, ``args.overrides``; read them with :func:`load_config`)."""
    p.add_argument("--config", "-c", help="YAML file of TrainConfig sections: model, data, optim, objective, run (see docs/training.md)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config key, e.g. --set optim.lr=3e-4 --set model.arch.depth=4 (repeatable)")


def _add_config_args(p: argparse.ArgumentParser) -> None:
    add_config_file_args(p)
    p.add_argument("--out", help="run folder (config key run.out_dir)")
    p.add_argument("--train-manifest", help="training manifest (CSV/JSONL) or a folder-per-class tree")
    p.add_argument("--eval-manifest", help="evaluation manifest (CSV/JSONL) or a folder-per-class tree")
    p.add_argument("--train-shards", help="prepared shard folder to train from (zorro prepare; config key data.train_shards)")
    p.add_argument("--eval-shards", help="prepared shard folder to evaluate on (config key data.eval_shards)")


# ---------------------------------------------------------------------------- commands


def _run_training(args: argparse.Namespace, task: str) -> int:
    from zorro.train import TrainConfig, train

    data = load_config(args.config, args.overrides, {
        "task": task, "run": {"out_dir": args.out}, "model": {"init_from": getattr(args, "init_from", None)},
        "data": {"train_manifest": args.train_manifest, "eval_manifest": args.eval_manifest,
                 "train_shards": args.train_shards, "eval_shards": args.eval_shards},
    })
    data = command_line_data_wins(data, args)
    try:
        cfg = TrainConfig.from_dict(data)
    except (ValueError, TypeError) as exc:  # name the file the bad field came from
        if not args.config:
            raise
        where = f"{args.config}" + (" (with --set overrides)" if args.overrides else "")
        raise type(exc)(f"{where}: {exc}") from exc
    metrics = train(cfg)
    if metrics:
        logger.info("run folder: %s", cfg.run.out_dir)
    return 0


def command_line_data_wins(data: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """A data source given on the command line replaces the other kind the config names for
    the same split (``--train-manifest`` drops the config's ``data.train_shards`` and
    ``--train-shards`` its ``data.train_manifest``; the same for eval), with a log line."""
    section = dict(data.get("data") or {})
    for split in ("train", "eval"):
        for given, other in (("manifest", "shards"), ("shards", "manifest")):
            if getattr(args, f"{split}_{given}", None) and section.get(f"{split}_{other}"):
                logger.info("--%s-%s replaces data.%s_%s=%s from the config", split, given, split, other, section[f"{split}_{other}"])
                section[f"{split}_{other}"] = None
    return {**data, "data": section} if "data" in data else data


def _cmd_pretrain(args: argparse.Namespace) -> int:
    return _run_training(args, "pretrain")


def _cmd_train(args: argparse.Namespace) -> int:
    return _run_training(args, "supervised")


def _cmd_evaluate(args: argparse.Namespace) -> int:
    import torch
    from torch.utils.data import DataLoader

    from zorro.data import SkipTracker, collate_clips
    from zorro.evaluate import classifier_metrics, collect_logits, confusion_report, headline, write_confusion_report
    from zorro.fileio import atomic_write_text
    from zorro.train.data_report import DataReport
    from zorro.train.precision import autocast, resolve_precision
    from zorro.train.record import with_overrides
    from zorro.train.run_folder import load_run, run_dataset

    run = load_run(Path(args.run))
    if run.config.model.compile:  # the run's own settings: compiled as it trained (precision below)
        from zorro.train.build import compile_backbone

        compile_backbone(run.model.backbone)
    cfg = with_overrides(run.config, duration=args.duration, num_frames=args.num_frames, image_size=args.image_size)
    dataset = run_dataset(cfg, run.vocab, manifest=args.manifest, shards=args.shards)
    batch_size = args.batch_size or cfg.data.eval_batch_size
    workers = cfg.data.num_workers if args.num_workers is None else args.num_workers
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=collate_clips)
    skips = SkipTracker("evaluation")
    data_report = DataReport("evaluation", duration=cfg.data.duration, sample_rate=cfg.data.sample_rate)
    device = torch.device("cpu")
    with autocast(resolve_precision(cfg.model.precision, device), device):
        collected = collect_logits(run.model, data_report.track(skips.track(loader)), device=device)
    data_report.log()
    if skips.total_skipped:
        logger.warning("%d clips could not be read and were left out of the evaluation", skips.total_skipped)
    metrics = classifier_metrics(collected, multi_label=cfg.data.multi_label)
    protocol = args.protocol or cfg.data.eval_protocol
    if protocol:  # the dataset's metrics, one score per file (zorro.protocols)
        from zorro.protocols import evaluate_protocol

        metrics["protocol"] = evaluate_protocol(run.model, loader, protocol, average_windows=not args.per_window)
    report_dir = Path(args.report_dir) if args.report_dir else run.folder / "eval" / _data_name(args, cfg)
    report_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(metrics, indent=2)
    atomic_write_text(report_dir / "metrics.json", text)
    written = [report_dir / "metrics.json"]
    if not cfg.data.multi_label:
        written += write_confusion_report(confusion_report(collected), run.vocab.names, report_dir / "confusion")
    atomic_write_text(report_dir / "data_report.json", json.dumps({"evaluation": data_report.summary(), "unreadable": skips.total_skipped}, indent=2))
    if args.output:
        out = Path(args.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out, text)
    logger.info("wrote %s (metrics; per-output confusion matrices and per-class accuracy in %s)", report_dir / "metrics.json", report_dir / "confusion")
    print(json.dumps(headline(metrics), indent=2))
    return 0


def _data_name(args: argparse.Namespace, cfg) -> str:
    """A folder name for the evaluated data: the manifest's (or shard folder's) name."""
    source = Path(args.manifest or args.shards or cfg.data.eval_manifest or cfg.data.eval_shards)
    name = source.stem if source.suffix else source.name
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "data"


def _cmd_embed(args: argparse.Namespace) -> int:
    import torch
    from torch.utils.data import DataLoader

    from zorro.data import (ClipDataset, ManifestEntry, SkipTracker, batch_modalities, collate_clips, modality_inputs, read_manifest,
                            split_by_modality)
    from zorro.data.transforms import IMAGENET_MEAN, IMAGENET_STD
    from zorro.fileio import atomic_write_text
    from zorro.hub import atomic_save_safetensors
    from zorro.model import Zorro
    from zorro.train.data_report import DataReport
    from zorro.train.record import check_sample_rates, with_overrides
    from zorro.train.run_folder import read_run_config

    folder = Path(args.model)
    is_run = (folder / "model" / "config.json").exists()
    model = Zorro.from_pretrained(str(folder / "model" if is_run else folder)).eval()
    if is_run and (folder / "config.json").exists():  # a run folder: read clips as the run did
        cfg = with_overrides(read_run_config(folder, model_sample_rate=model.config.audio_sample_rate),
                             duration=args.duration, num_frames=args.num_frames, image_size=args.image_size)
        d = cfg.data
        settings = dict(duration=d.duration, num_frames=d.num_frames, image_size=d.image_size, sample_rate=d.sample_rate,
                        mean=d.video_mean, std=d.video_std)
    else:  # a from_pretrained folder: the options given, the model's rate
        settings = dict(duration=args.duration or 2.0, num_frames=args.num_frames or 8, image_size=args.image_size or 224,
                        sample_rate=model.config.audio_sample_rate, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    check_sample_rates(settings["sample_rate"], model.config.audio_sample_rate, where="the clips' sample rate")
    from zorro.data.modalities import extra_from_table

    extra = extra_from_table(model.config.modality_specs())  # the model's text / sequence columns of the manifest
    entries = read_manifest(args.manifest, modalities=extra)
    # Labels are optional here: unlabelled files get a placeholder class, and the index keeps the real labels.
    dataset = ClipDataset([ManifestEntry(e.path, e.labels or ("",), e.start, e.end, e.extra) for e in entries],
                          multi_label=any(len(e.labels) > 1 for e in entries), train=False, extra_modalities=extra, **settings)
    loader = DataLoader(dataset, batch_size=args.batch_size, num_workers=args.num_workers, collate_fn=collate_clips)
    names = list(model.return_token_names)
    chunks: dict[str, list[torch.Tensor]] = {name: [] for name in names}
    index: list[dict[str, Any]] = []
    skips = SkipTracker()
    data_report = DataReport("embedded", duration=settings["duration"], sample_rate=settings["sample_rate"])
    with torch.no_grad():
        for batch in data_report.track(skips.track(loader)):
            for group in split_by_modality(batch, [m for m in model.modality_names if f"has_{m}" in batch]):
                out = model.encode(**modality_inputs(group, model.modality_names))
                n = len(group["batch_index"])
                for row in group["batch_index"].tolist():
                    entry = entries[int(batch["index"][row])]
                    index.append({"row": len(index), "path": batch["path"][row], "labels": list(entry.labels),
                                  **{f"has_{m}": bool(batch[f"has_{m}"][row]) for m in batch_modalities(batch)}})
                for name in names:
                    value = out.embeddings.get(name)
                    chunks[name].append(value.float() if value is not None else torch.full((n, model.config.dim), float("nan")))
    if not index:
        raise ValueError(f"no clip of {args.manifest} could be read ({skips.total_skipped} unreadable)")
    data_report.log()
    tensors = {name: torch.cat(parts).contiguous() for name, parts in chunks.items()}
    out_path = Path(args.output)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_save_safetensors(out_path, tensors, metadata={"index": json.dumps(index)})
    index_path = out_path.with_suffix(".index.json")
    atomic_write_text(index_path, json.dumps(index, indent=1))
    logger.info("wrote %d embeddings (%s) to %s and the row index to %s; %d unreadable files skipped",
                len(index), ", ".join(tensors), out_path, index_path, skips.total_skipped)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from zorro.recipes.avdigits_demo import format_table, run_demo

    metrics = run_demo(out_dir=Path(args.out), data_dir=Path(args.data), quick=args.quick, config_overrides=parse_overrides(args.overrides),
                       modalities=args.modalities)
    print(format_table(metrics))
    print(f"metrics: {Path(args.out) / 'metrics.json'}   checkpoint: {Path(args.out) / 'finetune' / 'model'}")
    return 0


def _add_clip_overrides(p: argparse.ArgumentParser, *, plain_defaults: bool = False) -> None:
    """``--duration``, ``--num-frames``, ``--image-size``: default the run's recorded values
    (logged when an override differs from them)."""
    extra = " (a from_pretrained folder: 2.0 s, 8 frames, 224 pixels)" if plain_defaults else ""
    p.add_argument("--duration", type=float, help="clip length (s); default: what the run trained with" + extra)
    p.add_argument("--num-frames", type=int, help="frames per clip; default: what the run trained with")
    p.add_argument("--image-size", type=int, help="square frame side (pixels); default: what the run trained with")


def register(sub: argparse._SubParsersAction) -> None:
    """Add the training-side commands to the ``zorro`` parser."""
    p = sub.add_parser("pretrain", help="contrastive audio-visual pre-training (no labels)",
                       description="Contrastive pre-training: symmetric InfoNCE between o_A and o_V, plus o_F/o_G "
                                   "against the concatenated unimodal embeddings. Works under torchrun for DDP.")
    _add_config_args(p)
    p.set_defaults(func=_cmd_pretrain)

    p = sub.add_parser("train", help="supervised training / fine-tuning (a classifier per output)",
                       description="Supervised training: one classifier on each output, losses summed. Start from "
                                   "scratch or from a pre-trained folder with --init-from. Works under torchrun for DDP.")
    _add_config_args(p)
    p.add_argument("--init-from", help="backbone weights: a from_pretrained folder or a run folder")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("evaluate", help="evaluate a supervised run on a manifest",
                       description="Top-1/top-5 and cross-entropy (or mAP) of each output, their average, and audio-only / "
                                   "video-only inference, reading clips with the settings the run trained with (its config.json). "
                                   "Writes metrics.json and, per evaluated output, a confusion matrix and per-class accuracy "
                                   "(confusion/<output>.json and .png) to --report-dir.")
    p.add_argument("run", help="run folder written by `zorro train`")
    p.add_argument("--manifest", help="evaluation manifest (CSV/JSONL) or a folder-per-class tree (default: the run's data.eval_manifest)")
    p.add_argument("--shards", help="evaluation shards: a folder written by `zorro prepare` (instead of --manifest)")
    _add_clip_overrides(p)
    from zorro.data.registry import names as dataset_names

    p.add_argument("--protocol", choices=dataset_names(),
                   help="also report this dataset's metrics, one score per file (default: the run's data.eval_protocol)")
    p.add_argument("--per-window", action="store_true",
                   help="with --protocol: score every stored window on its own instead of averaging the windows of a file")
    p.add_argument("--batch-size", type=int, help="clips per batch (default: the run's data.eval_batch_size)")
    p.add_argument("--num-workers", type=int, help="decoding processes (default: the run's data.num_workers)")
    p.add_argument("--output", help="also write the full metrics JSON here")
    p.add_argument("--report-dir", help="folder for metrics.json, data_report.json and confusion/ (default: RUN/eval/<data name>)")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("embed", help="embeddings of every clip of a manifest (safetensors + index)",
                       description="Writes one (N, dim) tensor per output (audio, video, fusion, global) to the safetensors "
                                   "file OUTPUT, NaN rows where a clip lacks the modality, and beside it an index (OUTPUT with "
                                   "its suffix replaced by .index.json: emb/x.safetensors -> emb/x.index.json) giving each row's "
                                   "file and labels. Given a run folder, clips are read with the run's settings.")
    p.add_argument("model", help="a run folder (clips read as the run trained) or a from_pretrained folder")
    p.add_argument("--manifest", required=True, help="CSV/JSONL manifest or a folder-per-class tree (labels optional)")
    p.add_argument("--output", required=True, help="output .safetensors file (its folder is created)")
    _add_clip_overrides(p, plain_defaults=True)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--num-workers", type=int, default=2)
    p.set_defaults(func=_cmd_embed)

    p = sub.add_parser("demo", help="the AV-digits demo: build data, pre-train, fine-tune, evaluate",
                       description="Builds AV-digits (spoken digits by espeak-ng + handwritten digit clips) as real mp4 files, "
                                   "pre-trains contrastively, fine-tunes, and reports retrieval and top-1 of every output "
                                   "and of audio-only / video-only inference. Writes OUT/metrics.json, plots and a checkpoint.")
    p.add_argument("--out", default="runs/demo", help="run folder")
    p.add_argument("--data", default="data/avdigits", help="dataset cache folder")
    p.add_argument("--quick", action="store_true", help="tiny data and few steps (a smoke run, not the real demo)")
    p.add_argument("--modalities", default="audio,video", metavar="NAMES",
                   help="audio,video (default) or audio,video,text: the tri-modal demo adds each clip's caption as a third "
                        "modality and reports retrieval in all six directions and text-only / audio-only / video-only top-1")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a demo setting (e.g. --set pretrain.optim.epochs=2)")
    p.set_defaults(func=_cmd_demo)
