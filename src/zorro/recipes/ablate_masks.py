"""Why the masks matter: Zorro against full attention and MBT-style bottlenecks on AV-digits.

``zorro ablate masks --out runs/ablate`` trains the same model under each attention rule of
:mod:`zorro.masks` (``mask_rule`` ``"zorro"``, ``"full"``, ``"bottleneck"``) with the same
data, schedule and training seeds, and optionally Zorro with other numbers of fusion
tokens. For every variant and seed:

1. contrastive pre-training (:class:`zorro.train.Trainer`, task ``pretrain``) -- its loss
   curve;
2. class-level retrieval R@1 on the test split, from **unimodal** calls (audio embeddings
   from ``model(audio=...)``, video embeddings from ``model(video=...)``) and from calls
   given both inputs (:func:`zorro.evaluate.evaluate_retrieval`);
3. the nearest-class-centroid probe of o_A from audio-only input and of o_V from video-only
   input (:func:`zorro.evaluate.centroid_probe`);
4. supervised fine-tuning from the pre-trained backbone (same rule), then audio-only and
   video-only top-1 (:func:`zorro.evaluate.evaluate_classifier`).

The data are the demo's AV-digits (:func:`zorro.demo.build_avdigits`; an existing build
with the same parameters is reused), decoded once for all runs. The model is the demo's;
the schedule is shorter than the demo's (see :data:`ABLATION_SETTINGS`). Each finished run
writes ``OUT/runs/<variant>-seed<k>/result.json``; a rerun with the same settings reuses
it (also when the lists of rules, seeds or fusion-token counts differ), so an interrupted
comparison continues where it stopped and runs made by separate invocations (e.g. one seed
each, in parallel) combine. After every run
``OUT/metrics.json``, ``OUT/table.md`` and ``OUT/ablation.png`` are rewritten with what is
finished.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Subset

from zorro.audio import feature_stats
from zorro.data import ClipDataset, collate_clips, read_manifest
from zorro.demo import build_avdigits
from zorro.evaluate import centroid_probe, evaluate_retrieval
from zorro.masks import MASK_RULES
from zorro.model import ZorroConfig, build_audio_frontend
from zorro.train import CachedClips, Trainer, TrainConfig

logger = logging.getLogger(__name__)

#: Settings of the comparison; ``zorro ablate masks --set key=value`` overrides any of them.
#: ``data`` and ``model`` are the demo's (AV-digits 8,000 + 500 clips; dim 128, depth 2),
#: except for 4 fusion tokens (MBT's bottleneck width) instead of 8. ``pretrain`` is the
#: demo's objective with 4 epochs (500 steps of 64 clips) instead of 8 (1,000 steps),
#: ``finetune`` 1 epoch (250 steps of 32) instead of 2: the eight runs took 1,701
#: CPU-seconds (about 14 minutes on two idle cores; docs/results/ablation.md). The shortcut
#: of the "full" and "bottleneck" rules shows within the first 100 steps;
#: ``--set pretrain.optim.epochs=2`` halves the pre-training (993 CPU-seconds in all).
ABLATION_SETTINGS: dict[str, Any] = {
    "data": {"num_train": 8000, "num_test": 500, "duration": 1.0, "num_frames": 8, "image_size": 32, "seed": 0},
    "model": {
        "dim": 128, "depth": 2, "heads": 4, "dim_head": 32, "ff_mult": 2, "num_fusion_tokens": 4,
        "audio_patch_size": [16, 8], "video_patch_size": 8, "video_temporal_patch_size": 8,
        "fbank_num_mel_bins": 64, "return_token_types": ["AUDIO", "VIDEO", "FUSION", "GLOBAL"],
        "spec_aug_freq_mask": 8, "spec_aug_time_mask": 10, "spec_aug_stretch_factor": 1.0,
    },
    "pretrain": {"optim": {"epochs": 4, "lr": 2e-3, "warmup_steps": 20, "weight_decay": 0.05}, "data": {"batch_size": 64},
                 "objective": {"proj_dim": 64, "temperature": 0.1, "intra_weight": 0.5, "cross_view": True,
                               "augment": {"max_shift_fraction": 0.0625, "audio_domain": "fbank"}}},
    "finetune": {"optim": {"epochs": 1, "lr": 2e-3, "warmup_steps": 50, "weight_decay": 0.05}, "data": {"batch_size": 32},
                 "objective": {"label_smoothing": 0.1}},
    "rules": list(MASK_RULES),  # every variant below is trained with every seed
    "fusion_tokens": [0, 16],  # extra "zorro" variants with these numbers of fusion tokens
    "seeds": [0, 1],  # training seeds (the data stay the same)
    "fusion_seeds": [0],  # training seeds of the extra fusion-token variants
    "probe_train_clips": 2000,  # training clips whose class centroids the probes use
    "num_workers": 2,  # decoding processes (once, before the runs)
    "precision": "fp32",
}

#: A tiny configuration for tests: seconds, not minutes.
QUICK_SETTINGS: dict[str, Any] = {
    "data": {"num_train": 40, "num_test": 20},
    "model": {"depth": 1, "dim": 32, "heads": 2, "dim_head": 16},
    "pretrain": {"optim": {"epochs": 1, "warmup_steps": 1, "max_steps": 2}, "data": {"batch_size": 16}},
    "finetune": {"optim": {"epochs": 1, "warmup_steps": 1, "max_steps": 2}, "data": {"batch_size": 16}},
    "fusion_tokens": [],
    "seeds": [0],
    "fusion_seeds": [0],
    "probe_train_clips": 40,
    "num_workers": 0,
}

#: Columns of the table: (metrics.json key, header).
COLUMNS = (
    ("retrieval_unimodal_a2v_r1", "R@1 a→v, unimodal"),
    ("retrieval_unimodal_v2a_r1", "R@1 v→a, unimodal"),
    ("retrieval_both_a2v_r1", "R@1 a→v, both in"),
    ("retrieval_both_v2a_r1", "R@1 v→a, both in"),
    ("probe_audio_only", "probe o_A, audio only"),
    ("probe_video_only", "probe o_V, video only"),
    ("finetune_audio_only_top1", "fine-tuned, audio only"),
    ("finetune_video_only_top1", "fine-tuned, video only"),
    ("pretrain_final_loss", "final pre-training loss"),
)


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def variants(s: dict[str, Any]) -> list[dict[str, Any]]:
    """The runs of a comparison: ``{"name", "mask_rule", "num_fusion_tokens", "seed"}`` each,
    the rules first (every seed), then the extra fusion-token counts under ``"zorro"``."""
    base = int(s["model"]["num_fusion_tokens"])
    out = [{"name": rule, "mask_rule": rule, "num_fusion_tokens": base, "seed": int(seed)} for seed in s["seeds"] for rule in s["rules"]]
    for seed in s["fusion_seeds"]:
        for count in s["fusion_tokens"]:
            if int(count) != base or "zorro" not in s["rules"]:
                out.append({"name": f"zorro, {int(count)} fusion", "mask_rule": "zorro", "num_fusion_tokens": int(count), "seed": int(seed)})
    return out


def _arch(model: dict[str, Any], variant: dict[str, Any]) -> dict[str, Any]:
    arch = {**model, "mask_rule": variant["mask_rule"], "num_fusion_tokens": variant["num_fusion_tokens"]}
    if variant["num_fusion_tokens"] == 0:  # no fusion tokens: no FUSION output to pool them
        arch["return_token_types"] = [t for t in arch["return_token_types"] if str(t).upper() != "FUSION"]
    return arch


def _load_data(data_dir: Path, s: dict[str, Any]) -> tuple[CachedClips, CachedClips, Any, dict[str, Any]]:
    d = s["data"]
    info = build_avdigits(data_dir, num_train=d["num_train"], num_test=d["num_test"], seed=d["seed"], duration=d["duration"],
                          num_frames=d["num_frames"], image_size=d["image_size"])
    geometry = dict(duration=d["duration"], num_frames=d["num_frames"], image_size=d["image_size"], sample_rate=SAMPLE_RATE, train=False)
    train_raw = ClipDataset(read_manifest(data_dir / "train.csv"), **geometry)
    test_raw = ClipDataset(read_manifest(data_dir / "test.csv"), vocab=train_raw.vocab, **geometry)
    train = CachedClips(train_raw, num_workers=s["num_workers"])
    test = CachedClips(test_raw, num_workers=s["num_workers"])
    return train, test, train_raw.vocab, info


#: The rate the audio is decoded at: the model's (16 kHz).
SAMPLE_RATE = 16000


def _train_config(task: str, stage: dict[str, Any], arch: dict[str, Any], out_dir: Path, seed: int, s: dict[str, Any], data_dir: Path,
                  **model: Any) -> TrainConfig:
    # Every setting the trainers use is in the config, so each run folder records it: the
    # clips (decoded once from the manifests, centred windows and crops; views come from the
    # objective's augmentation) and where they came from.
    d = s["data"]
    common = {"task": task, "model": {"arch": arch, "precision": s["precision"], **model},
              "data": {"num_workers": 0, "eval_batch_size": 128, "duration": float(d["duration"]), "num_frames": int(d["num_frames"]),
                       "image_size": int(d["image_size"]), "sample_rate": SAMPLE_RATE, "train_crop": "centre",
                       "train_manifest": str((data_dir / "train.csv").resolve()), "eval_manifest": str((data_dir / "test.csv").resolve())},
              "run": {"out_dir": str(out_dir), "seed": seed, "resume": False, "log_every": 5, "tensorboard": False}}
    return TrainConfig.from_dict(_merge(common, stage))


def _run_one(variant: dict[str, Any], s: dict[str, Any], model_kwargs: dict[str, Any], data: tuple, run_dir: Path, data_dir: Path) -> dict[str, Any]:
    """Pre-train, probe and fine-tune one variant with one seed; returns its result record."""
    train_set, test_set, vocab = data
    arch = _arch(model_kwargs, variant)
    t0 = time.perf_counter()
    pretrainer = Trainer(_train_config("pretrain", s["pretrain"], arch, run_dir / "pretrain", variant["seed"], s, data_dir), train_set, test_set, vocab)
    retrieval_both = pretrainer.fit()
    t_pre = time.perf_counter() - t0
    test_loader = DataLoader(test_set, batch_size=128, collate_fn=collate_clips)
    probe_train = Subset(train_set, range(min(len(train_set), int(s["probe_train_clips"]))))
    probe_loader = DataLoader(probe_train, batch_size=128, collate_fn=collate_clips)
    retrieval_uni = evaluate_retrieval(pretrainer.objective.task, test_loader, unimodal=True)
    probe_uni = centroid_probe(pretrainer.backbone, probe_loader, test_loader, unimodal=True)
    probe_both = centroid_probe(pretrainer.backbone, probe_loader, test_loader)
    t1 = time.perf_counter()
    finetuner = Trainer(_train_config("supervised", s["finetune"], arch, run_dir / "finetune", variant["seed"], s, data_dir,
                                      init_from=str(run_dir / "pretrain" / "model")), train_set, test_set, vocab)
    fine = finetuner.fit()
    t_ft = time.perf_counter() - t1
    curve = [r for r in pretrainer.history if "loss" in r]
    last = [r["loss"] for r in curve[-5:]]
    return {
        **variant,
        "pretrain_steps": pretrainer.total_steps,
        "finetune_steps": finetuner.total_steps,
        "curve": {"step": [r["step"] for r in curve], "loss": [r["loss"] for r in curve],
                  "audio_video": [r.get("parts", {}).get("audio_video", float("nan")) for r in curve]},
        "pretrain_final_loss": sum(last) / len(last) if last else float("nan"),
        "retrieval_both": retrieval_both,
        "retrieval_unimodal": retrieval_uni,
        "probe_unimodal": probe_uni,
        "probe_both": probe_both,
        "finetune": {k: {"top1": v["top1"]} for k, v in fine.items() if isinstance(v, dict) and "top1" in v},
        "seconds": {"pretrain": t_pre, "probes": t1 - t0 - t_pre, "finetune": t_ft},
    }


def _flat(result: dict[str, Any]) -> dict[str, float]:
    """The table's numbers of one run."""
    nan = float("nan")
    return {
        "retrieval_unimodal_a2v_r1": result["retrieval_unimodal"].get("a2v_r1", nan),
        "retrieval_unimodal_v2a_r1": result["retrieval_unimodal"].get("v2a_r1", nan),
        "retrieval_both_a2v_r1": result["retrieval_both"].get("a2v_r1", nan),
        "retrieval_both_v2a_r1": result["retrieval_both"].get("v2a_r1", nan),
        "probe_audio_only": result["probe_unimodal"].get("audio", nan),
        "probe_video_only": result["probe_unimodal"].get("video", nan),
        "finetune_audio_only_top1": result["finetune"].get("audio_only", {}).get("top1", nan),
        "finetune_video_only_top1": result["finetune"].get("video_only", {}).get("top1", nan),
        "pretrain_final_loss": result["pretrain_final_loss"],
    }


def summarise(results: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per variant name: ``seeds``, ``mask_rule``, ``num_fusion_tokens``, and for every table
    column the ``mean`` and the per-seed ``values``."""
    out: dict[str, dict[str, Any]] = {}
    for r in results:
        entry = out.setdefault(r["name"], {"mask_rule": r["mask_rule"], "num_fusion_tokens": r["num_fusion_tokens"], "seeds": [], "columns": {}})
        entry["seeds"].append(r["seed"])
        for key, value in _flat(r).items():
            entry["columns"].setdefault(key, {"values": []})["values"].append(value)
    for entry in out.values():
        for col in entry["columns"].values():
            vals = [v for v in col["values"] if not math.isnan(v)]
            col["mean"] = sum(vals) / len(vals) if vals else float("nan")
    return out


def format_table(metrics: dict[str, Any]) -> str:
    """The comparison as a Markdown table: the mean over training seeds, and each seed's value
    in brackets when there are several."""
    head = ["variant", "mask_rule", "fusion tokens", "seeds"] + [h for _, h in COLUMNS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, entry in metrics["summary"].items():
        cells = [name, entry["mask_rule"], str(entry["num_fusion_tokens"]), ", ".join(map(str, entry["seeds"]))]
        for key, _ in COLUMNS:
            col = entry["columns"][key]
            cell = f"{col['mean']:.3f}"
            if len(col["values"]) > 1:
                cell += " (" + " / ".join(f"{v:.3f}" for v in col["values"]) + ")"
            cells.append(cell)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _plot(results: list[dict[str, Any]], summary: dict[str, dict[str, Any]], path: Path) -> None:
    from zorro.plots import plot_comparison

    loss: dict[str, list] = {}
    av: dict[str, list] = {}
    for r in results:
        loss.setdefault(r["name"], []).append((r["curve"]["step"], r["curve"]["loss"]))
        av.setdefault(r["name"], []).append((r["curve"]["step"], r["curve"]["audio_video"]))
    shown = (("retrieval_unimodal_a2v_r1", "R@1 a→v\nunimodal"), ("retrieval_unimodal_v2a_r1", "R@1 v→a\nunimodal"),
             ("retrieval_both_a2v_r1", "R@1 a→v\nboth in"), ("probe_audio_only", "probe o_A\naudio only"),
             ("probe_video_only", "probe o_V\nvideo only"), ("finetune_audio_only_top1", "fine-tuned\naudio only"),
             ("finetune_video_only_top1", "fine-tuned\nvideo only"))
    bars = {label: {name: e["columns"][key]["mean"] for name, e in summary.items()} for key, label in shown}
    plot_comparison(
        [("contrastive pre-training loss (total)", "loss (nats)", loss),
         ("its audio-video InfoNCE term (same view)", "loss (nats)", av)],
        ("AV-digits test split (mean over seeds)", bars),
        path,
        title="AV-digits: attention rule during pre-training (solid: first seed, dashed: second)",
    )


#: The settings that change what one run computes (the others only choose which runs are made).
RUN_SETTINGS = ("data", "model", "pretrain", "finetune", "probe_train_clips", "precision")


def _same_run(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether a finished run's stamp (variant and settings) describes the run ``new`` asks for; settings outside :data:`RUN_SETTINGS` (the lists of rules, seeds
    and fusion-token counts) do not matter, so runs made by separate invocations combine."""
    relevant = [(stamp.get("variant"), {k: stamp.get("settings", {}).get(k) for k in RUN_SETTINGS})
                for stamp in (old, new)]
    return relevant[0] == relevant[1]


def run_ablation(*, out_dir: Path, data_dir: Path, quick: bool = False, config_overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run the whole comparison; returns the content written to ``out_dir/metrics.json``.

    Args:
        out_dir: output folder: ``metrics.json``, ``table.md``, ``ablation.png`` and one run
            folder per variant and seed under ``runs/``.
        data_dir: AV-digits folder (built on first use, reused when its parameters match).
        quick: the tiny test configuration (:data:`QUICK_SETTINGS`), not the real comparison.
        config_overrides: nested overrides of :data:`ABLATION_SETTINGS`.

    Returns:
        ``{"settings", "results" (one record per run), "summary" (per variant), "table",
        "seconds" (wall), "cpu_seconds" (this process, user + sys), "data"}``.
    """
    t0, c0 = time.perf_counter(), time.process_time()
    s = _merge(ABLATION_SETTINGS, QUICK_SETTINGS) if quick else dict(ABLATION_SETTINGS)
    s = _merge(s, config_overrides or {})
    for rule in s["rules"]:
        if rule not in MASK_RULES:
            raise ValueError(f"rules must be taken from {MASK_RULES}, got {rule!r}")
    out_dir.mkdir(parents=True, exist_ok=True)

    data: dict[str, Any] = {}

    def prepared() -> dict[str, Any]:
        # Decoded on first need: an invocation whose runs are all finished reads no media.
        if not data:
            t = time.perf_counter()
            logger.info("AV-digits in %s; decoding every clip once for all runs", data_dir)
            train_set, test_set, vocab, info = _load_data(data_dir, s)
            train_set.add_audio_features(build_audio_frontend(ZorroConfig(**s["model"])))
            mean, std = feature_stats(item["audio_features"] for item in train_set.items if item.get("audio_features") is not None)
            data.update(sets=(train_set, test_set, vocab), model_kwargs={**s["model"], "audio_mean": mean, "audio_std": std},
                        info={"train_clips": len(train_set), "test_clips": len(test_set),
                              "unreadable": train_set.num_skipped + test_set.num_skipped, "seconds": time.perf_counter() - t,
                              "espeak": info.get("espeak"), "audio_norm": {"mean": mean, "std": std}})
            logger.info("%d train / %d test clips ready in %.0f s", len(train_set), len(test_set), data["info"]["seconds"])
        return data

    runs = variants(s)
    results: list[dict[str, Any]] = []
    metrics: dict[str, Any] = {}
    for i, variant in enumerate(runs, 1):
        run_dir = out_dir / "runs" / f"{variant['name'].replace(', ', '-').replace(' ', '_')}-seed{variant['seed']}"
        stamp = json.loads(json.dumps({"variant": variant, "settings": s}))
        done = run_dir / "result.json"
        previous = json.loads(done.read_text()) if done.is_file() else None
        if previous is not None and _same_run(previous.get("stamp", {}), stamp):
            logger.info("run %d/%d (%s, seed %d): reusing %s", i, len(runs), variant["name"], variant["seed"], done)
            result = previous["result"]
        else:
            logger.info("run %d/%d: %s, seed %d", i, len(runs), variant["name"], variant["seed"])
            d = prepared()
            result = _run_one(variant, s, d["model_kwargs"], d["sets"], run_dir, data_dir)
            done.write_text(json.dumps({"stamp": {**stamp, "data": d["info"]}, "result": result}, indent=1))
            flat = _flat(result)
            logger.info("%s seed %d: unimodal R@1 %.3f / %.3f, both-input R@1 %.3f / %.3f, fine-tuned audio-only %.3f video-only %.3f",
                        variant["name"], variant["seed"], flat["retrieval_unimodal_a2v_r1"], flat["retrieval_unimodal_v2a_r1"],
                        flat["retrieval_both_a2v_r1"], flat["retrieval_both_v2a_r1"], flat["finetune_audio_only_top1"],
                        flat["finetune_video_only_top1"])
        results.append(result)
        summary = summarise(results)
        metrics = {
            "settings": s,
            "runs_finished": len(results),
            "runs_planned": len(runs),
            "summary": summary,
            "results": results,
            "seconds": time.perf_counter() - t0,
            "cpu_seconds": time.process_time() - c0,
            "data": data.get("info", "not decoded: every run was reused"),
            "torch_threads": torch.get_num_threads(),
        }
        metrics["table"] = format_table(metrics)
        (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=1))
        (out_dir / "table.md").write_text(metrics["table"] + "\n")
        try:
            _plot(results, summary, out_dir / "ablation.png")
        except ImportError as err:  # matplotlib is a dependency; tolerate minimal installs
            logger.warning("no plot: %s", err)
    return metrics
