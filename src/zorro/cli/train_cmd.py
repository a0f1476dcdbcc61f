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
    try:
        cfg = TrainConfig.from_dict(data)
    except (ValueError, TypeError) as exc:  # name the file the bad field came from
        if not args.config:
            raise
        where = f"{args.config}" + (" (with --set overrides)" if args.overrides else "")
        raise type(exc)(f"{where}: {exc}") from exc
    metrics = train(cfg)
    if metrics:
        logger.info("final evaluation: %s", json.dumps(_headline(metrics)))
    return 0


def _headline(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: ({m: round(v, 4) for m, v in val.items() if isinstance(v, float)} if isinstance(val, dict) else val) for k, val in metrics.items()}


def _cmd_pretrain(args: argparse.Namespace) -> int:
    return _run_training(args, "pretrain")


def _cmd_train(args: argparse.Namespace) -> int:
    return _run_training(args, "supervised")


def _load_run(run_dir: Path):
    """Backbone + heads + vocab + config of a supervised run folder."""
    from safetensors.torch import load_file

    from zorro.data import LabelVocab
    from zorro.model import Zorro
    from zorro.tasks import ZorroClassifier
    from zorro.train import TrainConfig, sectioned

    cfg = TrainConfig.from_dict(sectioned(json.loads((run_dir / "config.json").read_text())))  # older runs: flat
    vocab = LabelVocab.load(run_dir / "labels.json")
    backbone = Zorro.from_pretrained(str(run_dir / "model"))
    model = ZorroClassifier(backbone, len(vocab))
    model.heads.load_state_dict(load_file(str(run_dir / "heads.safetensors")), strict=True)
    return model.eval(), vocab, cfg


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from torch.utils.data import DataLoader

    from zorro.data import collate_clips
    from zorro.evaluate import evaluate_classifier
    from zorro.train import build_dataset

    run_dir = Path(args.run)
    if not (run_dir / "heads.safetensors").exists():
        raise FileNotFoundError(f"{run_dir} is not a supervised run folder (no heads.safetensors); train one with `zorro train`")
    model, vocab, cfg = _load_run(run_dir)
    if bool(args.manifest) == bool(args.shards):
        raise ValueError("give the evaluation data as --manifest or as --shards (one of them)")
    if args.shards:
        from zorro.train.build import build_shard_dataset

        dataset = build_shard_dataset(cfg, args.shards, train=False, vocab=vocab)
    else:
        dataset = build_dataset(cfg, args.manifest, train=False, vocab=vocab)
    loader = DataLoader(dataset, batch_size=args.batch_size, num_workers=args.num_workers, collate_fn=collate_clips)
    metrics = evaluate_classifier(model, loader, multi_label=cfg.data.multi_label)
    protocol = args.protocol or cfg.data.eval_protocol
    if protocol:  # the dataset's metrics, one score per file (zorro.protocols)
        from zorro.protocols import evaluate_protocol

        metrics["protocol"] = evaluate_protocol(model, loader, protocol, average_windows=not args.per_window)
    text = json.dumps(metrics, indent=2)
    if args.output:
        Path(args.output).write_text(text)
    print(json.dumps(_headline(metrics), indent=2))
    return 0


def _cmd_embed(args: argparse.Namespace) -> int:
    import torch
    from safetensors.torch import save_file
    from torch.utils.data import DataLoader

    from zorro.data import ClipDataset, collate_clips, split_by_modality
    from zorro.model import Zorro

    folder = Path(args.model)
    if (folder / "model" / "config.json").exists():
        folder = folder / "model"
    model = Zorro.from_pretrained(str(folder)).eval()
    dataset = ClipDataset.from_manifest(
        args.manifest, train=False, duration=args.duration, num_frames=args.num_frames, image_size=args.image_size,
        sample_rate=model.config.sample_rate,
    )
    loader = DataLoader(dataset, batch_size=args.batch_size, num_workers=args.num_workers, collate_fn=collate_clips)
    chunks: dict[str, list[torch.Tensor]] = {}
    index: list[dict[str, Any]] = []
    skipped = 0
    with torch.no_grad():
        for batch in loader:
            skipped += batch["num_skipped"]
            for group in split_by_modality(batch):
                out = model.encode(audio=group["audio"], video=group["video"])
                for row in group["batch_index"].tolist():
                    index.append({"row": len(index), "path": batch["path"][row], "has_audio": bool(batch["has_audio"][row]), "has_video": bool(batch["has_video"][row])})
                for name in ("audio", "video", "fusion", "global"):
                    value = out.embeddings.get(name)
                    n = len(group["batch_index"])
                    chunks.setdefault(name, []).append(value.float() if value is not None else torch.full((n, model.config.dim), float("nan")))
    tensors = {name: torch.cat(parts).contiguous() for name, parts in chunks.items() if name in {t.name.lower() for t in model.return_token_types}}
    out_path = Path(args.output)
    save_file(tensors, str(out_path), metadata={"index": json.dumps(index)})
    out_path.with_suffix(".index.json").write_text(json.dumps(index, indent=1))
    logger.info("wrote %d embeddings (%s) to %s; %d unreadable files skipped", len(index), ", ".join(tensors), out_path, skipped)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from zorro.recipes.avdigits_demo import format_table, run_demo

    metrics = run_demo(out_dir=Path(args.out), data_dir=Path(args.data), quick=args.quick, config_overrides=parse_overrides(args.overrides))
    print(format_table(metrics))
    print(f"metrics: {Path(args.out) / 'metrics.json'}   checkpoint: {Path(args.out) / 'finetune' / 'model'}")
    return 0


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
                       description="Top-1/top-5 (or mAP) of each output, their average, and audio-only / video-only inference.")
    p.add_argument("run", help="run folder written by `zorro train`")
    p.add_argument("--manifest", help="evaluation manifest (CSV/JSONL) or a folder-per-class tree")
    p.add_argument("--shards", help="evaluation shards: a folder written by `zorro prepare` (instead of --manifest)")
    p.add_argument("--protocol", choices=("audioset", "vggsound", "kinetics-sounds", "esc50"),
                   help="also report this dataset's metrics, one score per file (default: the run's data.eval_protocol)")
    p.add_argument("--per-window", action="store_true",
                   help="with --protocol: score every stored window on its own instead of averaging the windows of a file")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--num-workers", type=int, default=2)
    p.add_argument("--output", help="write the full metrics JSON here")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("embed", help="embeddings of every clip of a manifest (safetensors + index)",
                       description="Writes one (N, dim) tensor per output (audio, video, fusion, global) to a safetensors "
                                   "file, NaN rows where a clip lacks the modality, and OUTPUT.index.json mapping rows to files.")
    p.add_argument("model", help="a from_pretrained folder or a run folder")
    p.add_argument("--manifest", required=True, help="CSV/JSONL manifest or a folder-per-class tree")
    p.add_argument("--output", required=True, help="output .safetensors file")
    p.add_argument("--duration", type=float, default=2.0, help="clip length (s)")
    p.add_argument("--num-frames", type=int, default=8)
    p.add_argument("--image-size", type=int, default=224)
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
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a demo setting (e.g. --set pretrain.optim.epochs=2)")
    p.set_defaults(func=_cmd_demo)
