"""The main demo: AV-digits end to end on a laptop CPU.

1. Build AV-digits once (:func:`zorro.demo.build_avdigits`): spoken digit words by
   eSpeak NG paired with animated handwritten digits, written as H.264/AAC mp4 files.
2. Decode every training clip once into prepared shards
   (:func:`zorro.data.prepare.prepare_shards`, kept beside the data and reused by later
   runs), read them back with :class:`zorro.data.ShardDataset`, and compute the model
   front-end's features of every training clip once: the fbank normalisation statistics
   come from them and the trainers take them instead of re-analysing the audio each step.
   The trainers read the clips from the shards every epoch. ``data.shards=False`` keeps every
   decoded training clip in memory instead (:class:`zorro.train.CachedClips`). The test
   split is decoded from ``test.csv`` into memory exactly as ``zorro evaluate RUN --manifest
   test.csv`` reads it, so evaluating a run folder reproduces the demo's numbers.
3. Contrastive pre-training without labels; class-level cross-modal retrieval on the test
   split (voices, accents and digit images never seen in training).
4. Supervised fine-tuning from the pre-trained backbone; top-1 of every output, and of the
   model given audio only and video only.
5. ``OUT/metrics.json``, loss plots, a confusion matrix, a ``from_pretrained`` checkpoint
   (``OUT/finetune/model``), and a short table on stdout (the CLI prints it). Each run
   folder's ``config.json`` records every setting its trainer used (clip length, frames,
   image size, sample rate, crop, the data read), so ``zorro evaluate OUT/finetune`` reads
   clips as the demo did.

``modalities=("audio", "video", "text")`` (``zorro demo --modalities audio,video,text``) is
the tri-modal demo: each clip's caption (the ``text`` column of the AV-digits manifests, a
sentence naming the digit; the test split's templates are never seen in training) is a
third modality. The model's table is the demo's audio and video settings plus ``{"kind":
"text"}``; the training shards store the captions (``text.txt`` members); pre-training
contrasts every pair of the three, and the table reports retrieval in all six directions
and the fine-tuned model's top-1 given each modality alone (:data:`TRIMODAL_SETTINGS`
changes a few settings for it).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import fields
from pathlib import Path
from typing import Any

import hashlib

import torch

from zorro.audio import AudioFrontend, feature_stats
from torch.utils.data import DataLoader, Dataset, Subset

from zorro.data import ClipDataset, LabelVocab, ShardDataset, collate_clips, read_manifest
from zorro.data.prepare import PrepareSettings, prepare_shards
from zorro.evaluate import centroid_probe
from zorro.model import ZorroConfig, build_audio_frontend
from zorro.modalities import AUDIO_OPTIONS, VIDEO_OPTIONS
from zorro.demo import build_avdigits
from zorro.train import CachedClips, Trainer, TrainConfig

logger = logging.getLogger(__name__)

#: Default settings; ``zorro demo --set section.key=value`` overrides any of them.
DEMO_SETTINGS: dict[str, Any] = {
    # shards: decode once into prepared shards and train from them (False: every decoded clip in memory)
    "data": {"num_train": 8000, "num_test": 500, "duration": 1.0, "num_frames": 8, "image_size": 32, "seed": 0, "shards": True},
    "model": {
        "dim": 128, "depth": 2, "heads": 4, "dim_head": 32, "ff_mult": 2, "num_fusion_tokens": 8,
        "audio_patch_size": [16, 8], "video_patch_size": 8, "video_temporal_patch_size": 8,
        "fbank_num_mel_bins": 64, "return_token_types": ["AUDIO", "VIDEO", "FUSION", "GLOBAL"],
        "spec_aug_freq_mask": 8, "spec_aug_time_mask": 10, "spec_aug_stretch_factor": 1.0,
    },
    # Contrastive pre-training sees every clip as two augmented views (intra_weight): with
    # the audio-video term alone, InfoNCE stays at ln(batch) for the first thousand-odd steps
    # on 2 CPU cores (see docs/training.md); the audio-audio and video-video terms teach the
    # encoders features that ignore position, brightness, timing and loudness, and the
    # audio-video term starts learning within the budget. cross_view pairs the audio of each
    # view with the video of both (retrieval after 375 steps 0.32/0.35 -> 0.39/0.36). Training
    # clips are cheap to make (~10 ms each) and unique clips beat epochs (audio-only model,
    # same steps: 2,000 clips x 10 epochs 0.87 top-1, 6,000 x 5 0.94). Light views learn
    # fastest within this budget: over 1,000 steps (fbank-domain audio views, R@1 a2v/v2a),
    # dropping the speed warp (0.8-1.25), then the zoom (0.75-1.25), then halving the video
    # shift bound gave 0.78/0.85 -> 0.89/0.90 -> 0.92/0.91 -> 0.93/0.93 with training seed 0
    # and 0.72/0.81 -> 0.85/0.86 -> 0.85/0.87 -> 0.93/0.95 with seed 1, though zoom and speed
    # had helped early on (0.37/0.52 -> 0.51/0.57 after 500 waveform-domain steps). Depth 2 learns
    # as fast per step as depth 4 at 0.69x the time. One 8-frame tubelet per 8x8 patch (16
    # video tokens instead of 32) takes 0.87x the time per step at the same retrieval, and a
    # fixed temperature of 0.1 beat a learned one and fixed 0.05, 0.07, 0.15 and 0.2. The
    # audio views are drawn from each clip's fbank features, computed once (audio_domain
    # "fbank"): a step takes 0.79x the time of augmenting and re-analysing two waveforms, and
    # the budget then holds 8 pre-training epochs (1,000 steps) + 2 fine-tuning epochs on a
    # 2-core AVX2 EPYC (docs/training.md has the measurements). Fine-tuning at lr 2e-3 beat
    # 1e-3 and 3e-3 over 2 epochs (audio-only 0.936 vs 0.918 / 0.912 on the same pre-training).
    # "pretrain" and "finetune" hold sections of zorro.train.TrainConfig (--set pretrain.optim.epochs=9).
    "pretrain": {"optim": {"epochs": 8, "lr": 2e-3, "warmup_steps": 20, "weight_decay": 0.05}, "data": {"batch_size": 64},
                 "objective": {"proj_dim": 64, "temperature": 0.1, "intra_weight": 0.5, "cross_view": True,
                               "augment": {"max_shift_fraction": 0.0625, "audio_domain": "fbank"}}},
    "finetune": {"optim": {"epochs": 2, "lr": 2e-3, "warmup_steps": 50, "weight_decay": 0.05}, "data": {"batch_size": 32},
                 "objective": {"label_smoothing": 0.1}},
    "num_workers": 2,
    "probe_train_clips": 2000,  # training clips whose class centroids the pre-training probe uses
    # fp32: this small model trains faster in fp32 than under bf16 autocast on CPUs without
    # AMX (the autocast casts cost more than the bf16 matmuls save at dim 128).
    "precision": "fp32",
}

#: Changes of :data:`DEMO_SETTINGS` for the tri-modal demo (``--modalities audio,video,text``).
TRIMODAL_SETTINGS: dict[str, Any] = {
    "text_max_length": 64,  # byte-tokenizer ids per caption (bos and eos included); the longest caption is ~45
}

#: The modalities the demo can train on (``--modalities``), in the model's order.
DEMO_MODALITIES = ("audio", "video", "text")

QUICK_SETTINGS: dict[str, Any] = {
    "data": {"num_train": 60, "num_test": 30},
    "model": {"depth": 1, "dim": 64, "dim_head": 16},
    "pretrain": {"optim": {"epochs": 1, "warmup_steps": 1}, "data": {"batch_size": 16}},
    "finetune": {"optim": {"epochs": 1, "warmup_steps": 1}, "data": {"batch_size": 16}},
}


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


#: The rate the demo decodes audio at: the demo model's (its front-end is built for 16 kHz).
SAMPLE_RATE = 16000


def _clip_settings(d: dict[str, Any]) -> dict[str, Any]:
    """The ``data`` settings every demo clip is read with (and that its run folders record):
    the evaluation's centred window and centre crop for every split (training views come
    from the objective's augmentation), ImageNet normalisation."""
    return {"duration": float(d["duration"]), "num_frames": int(d["num_frames"]), "image_size": int(d["image_size"]),
            "sample_rate": SAMPLE_RATE, "train_crop": "centre"}


def _extra(s: dict[str, Any]) -> dict[str, Any]:
    """The dataset arguments of the demo's extra modalities (text): none for audio-video."""
    if "text" not in s.get("modalities", ()):
        return {}
    return {"extra_modalities": {"text": "text"}, "text_max_length": s.get("text_max_length")}


def _test_set(data_dir: Path, s: dict[str, Any], vocab: LabelVocab) -> CachedClips:
    """The test split decoded from ``test.csv`` through the media pipeline, once, exactly as
    ``zorro evaluate RUN --manifest test.csv`` reads it (so its metrics reproduce the demo's)."""
    c = _clip_settings(s["data"])
    extra = _extra(s)
    raw = ClipDataset(read_manifest(data_dir / "test.csv", modalities=extra.get("extra_modalities")), vocab=vocab, train=False,
                      duration=c["duration"], num_frames=c["num_frames"], image_size=c["image_size"], sample_rate=c["sample_rate"], **extra)
    return CachedClips(raw, num_workers=s["num_workers"])


def _datasets(data_dir: Path, s: dict[str, Any]) -> tuple[CachedClips, CachedClips, Any]:
    c = _clip_settings(s["data"])
    extra = _extra(s)
    common = dict(duration=c["duration"], num_frames=c["num_frames"], image_size=c["image_size"], sample_rate=c["sample_rate"], train=False,
                  **extra)
    train_raw = ClipDataset(read_manifest(data_dir / "train.csv", modalities=extra.get("extra_modalities")), **common)
    train = CachedClips(train_raw, num_workers=s["num_workers"])
    return train, _test_set(data_dir, s, train_raw.vocab), train_raw.vocab


class _WithAudioFeatures(Dataset):
    """The items of a :class:`~zorro.data.ShardDataset` with each clip's front-end features
    (computed once, kept in memory) added as ``audio_features``; ``shard_sizes`` is passed
    through, so the trainer still draws with :class:`~zorro.data.ShardSampler`."""

    def __init__(self, dataset: ShardDataset, features: list[torch.Tensor | None]) -> None:
        self.dataset = dataset
        self.features = features
        self.shard_sizes = dataset.shard_sizes
        self.vocab = dataset.vocab

    def __len__(self) -> int:
        return len(self.dataset)

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)

    def __getitem__(self, index: int) -> Any:
        item = self.dataset[index]
        if isinstance(item, dict) and item.get("audio") is not None and self.features[index] is not None:
            item["audio_features"] = self.features[index]
        return item


def _shard_datasets(data_dir: Path, s: dict[str, Any], build_info: dict[str, Any]) -> tuple[ShardDataset, CachedClips, LabelVocab]:
    """Prepare AV-digits' training split into shards once (a folder named after the build and
    the clip settings, so a rebuilt data set or other settings get new shards) and open it;
    the test split is decoded from its manifest (:func:`_test_set`)."""
    c = _clip_settings(s["data"])
    extra = _extra(s)
    key = [build_info, c["duration"], c["num_frames"], c["image_size"]] + ([sorted(extra["extra_modalities"])] if extra else [])
    tag = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:12]
    folder = data_dir / f"shards-{tag}"
    settings = PrepareSettings(window="centre", duration=c["duration"], num_frames=c["num_frames"], image_size=c["image_size"],
                               store_size=c["image_size"], sample_rate=c["sample_rate"], modalities=extra.get("extra_modalities", ()))
    entries = read_manifest(data_dir / "train.csv", modalities=extra.get("extra_modalities"))
    vocab = LabelVocab.from_labels(e.labels for e in entries)
    prepare_shards(entries, folder / "train", labels=vocab.names, settings=settings, workers=s["num_workers"])
    train = ShardDataset(folder / "train", train=False, duration=c["duration"], num_frames=c["num_frames"], image_size=c["image_size"],
                         sample_rate=c["sample_rate"], **extra)
    return train, _test_set(data_dir, s, vocab), vocab


@torch.no_grad()
def _audio_features(dataset: ShardDataset, frontend: AudioFrontend, num_workers: int) -> list[torch.Tensor | None]:
    """``frontend.features`` of every clip's audio (``(F, T)`` each; None without audio or
    for a skipped clip), read from the shards in batches."""
    t0 = time.perf_counter()
    out: list[torch.Tensor | None] = [None] * len(dataset)
    for batch in DataLoader(dataset, batch_size=256, num_workers=num_workers, collate_fn=collate_clips):
        if batch["audio"] is None:
            continue
        keep = batch["has_audio"]
        feats = frontend.features(batch["audio"][keep])
        for i, f in zip(batch["index"][keep].tolist(), feats):
            out[i] = f.clone()
    logger.info("front-end features of %d clips computed in %.1f s", sum(f is not None for f in out), time.perf_counter() - t0)
    return out


def check_modalities(modalities: Any) -> tuple[str, ...]:
    """The demo's modalities in the model's order: ``("audio", "video")`` or ``("audio",
    "video", "text")`` (a comma-separated string or a sequence of names). Raises ValueError
    for anything else."""
    names = [m.strip() for m in modalities.split(",")] if isinstance(modalities, str) else [str(m) for m in modalities]
    unknown = [m for m in names if m not in DEMO_MODALITIES]
    if unknown or len(set(names)) != len(names) or not {"audio", "video"} <= set(names):
        raise ValueError(f"the demo's modalities are audio,video (the default) or audio,video,text; got {','.join(names)!r}")
    return tuple(m for m in DEMO_MODALITIES if m in names)


def _model_arch(s: dict[str, Any], mean: float, std: float) -> dict[str, Any]:
    """The model's constructor options: the demo's flat audio-video settings, or with text a
    modality table built from them (audio and video specs as the flat settings give them,
    plus ``{"kind": "text"}``), return tokens one per modality, fusion and global."""
    flat = {**s["model"], "audio_mean": mean, "audio_std": std}
    if "text" not in s.get("modalities", ()):
        return flat
    specs = ZorroConfig(**flat).modality_specs()
    specs["text"] = {"kind": "text"}
    per_modality = {f.name for f in fields(ZorroConfig) if f.name in AUDIO_OPTIONS or f.name in VIDEO_OPTIONS}
    arch = {k: v for k, v in flat.items() if k not in per_modality}
    arch["modalities"] = specs
    arch["return_token_types"] = [*specs, "fusion", "global"]
    # as the saved config.json spells them, so the fine-tuning run (init_from) reads the same settings
    arch["return_token_types"] = ZorroConfig(**arch).to_dict()["return_token_types"]
    return arch


def run_demo(*, out_dir: Path, data_dir: Path, quick: bool = False, config_overrides: dict[str, Any] | None = None,
             modalities: Any = ("audio", "video")) -> dict[str, Any]:
    """Run the whole demo; returns the content written to ``out_dir/metrics.json``.

    Args:
        out_dir: run folder (``pretrain/`` and ``finetune/`` runs are written inside).
        data_dir: AV-digits cache folder (built on first use).
        quick: a tiny smoke configuration (used by the tests), not the real demo.
        config_overrides: nested overrides of :data:`DEMO_SETTINGS` (applied after
            :data:`TRIMODAL_SETTINGS` for the tri-modal demo).
        modalities: ``("audio", "video")`` (the demo) or ``("audio", "video", "text")`` (the
            tri-modal demo; see the module docstring); a comma-separated string works too.
    """
    t0 = time.perf_counter()
    names = check_modalities(modalities)
    s = dict(DEMO_SETTINGS)
    if "text" in names:
        s = _merge(s, TRIMODAL_SETTINGS)
    if quick:
        s = _merge(s, QUICK_SETTINGS)
    s = _merge(s, config_overrides or {})
    if "text" in names:
        s["modalities"] = list(names)
    out_dir.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}

    logger.info("step 1/4: AV-digits in %s", data_dir)
    d = s["data"]
    info = build_avdigits(
        data_dir, num_train=d["num_train"], num_test=d["num_test"], seed=d["seed"], duration=d["duration"],
        num_frames=d["num_frames"], image_size=d["image_size"],
    )
    timings["build_data"] = time.perf_counter() - t0

    t = time.perf_counter()
    # The model's front-end features of every training clip, once: the normalisation
    # statistics come from them, and both trainers read them instead of re-analysing the
    # audio each step (the front-end is built from the model settings, so the trainers'
    # own front-ends match it and reuse the cache).
    frontend = build_audio_frontend(ZorroConfig(**s["model"]))
    if d.get("shards", True):
        logger.info("step 2/4: decoding every clip once into shards, and the training audio's front-end features")
        shard_train, test_set, vocab = _shard_datasets(data_dir, s, info)
        features = _audio_features(shard_train, frontend, s["num_workers"])
        train_set = _WithAudioFeatures(shard_train, features)
        mean, std = feature_stats(f for f in features if f is not None)
        unreadable = int(shard_train.info["counts"]["unreadable"]) + test_set.num_skipped
        train_source = {"train_shards": str((shard_train.root).resolve())}
        workers = 1  # reading a batch of these small clips costs ~5 % of a step: one worker hides it
    else:
        logger.info("step 2/4: decoding every clip through the media pipeline into memory")
        train_set, test_set, vocab = _datasets(data_dir, s)
        train_set.add_audio_features(frontend)
        mean, std = feature_stats(item["audio_features"] for item in train_set.items if item.get("audio_features") is not None)
        unreadable = train_set.num_skipped + test_set.num_skipped
        train_source = {"train_manifest": str((data_dir / "train.csv").resolve())}
        workers = 0
    model_kwargs = _model_arch(s, mean, std)
    timings["decode"] = time.perf_counter() - t
    logger.info("decoded %d train / %d test clips (%d unreadable); fbank mean %.3f std %.3f", len(train_set), len(test_set), unreadable, mean, std)

    def train_config(task: str, stage: str, **model: Any) -> TrainConfig:
        # Every setting the trainers use goes into the config, so each run folder records it
        # (zorro evaluate / embed read the clips back exactly this way).
        common = {"task": task, "model": {"arch": model_kwargs, "precision": s["precision"], **model},
                  "data": {"num_workers": workers, "eval_batch_size": 128, **_clip_settings(d), **train_source,
                           "eval_manifest": str((data_dir / "test.csv").resolve()),
                           **({"text_max_length": s.get("text_max_length")} if "text" in names else {})},
                  "run": {"out_dir": str(out_dir / stage), "seed": d["seed"], "resume": False, "log_every": 5}}
        return TrainConfig.from_dict(_merge(common, s[stage]))

    t = time.perf_counter()
    logger.info("step 3/4: contrastive pre-training (no labels)")
    pre_cfg = train_config("pretrain", "pretrain")
    pretrainer = Trainer(pre_cfg, train_set, test_set, vocab)
    retrieval = pretrainer.fit()
    # Class centroids from the first probe_train_clips training clips (a few hundred a class
    # is plenty, and embedding all 8,000 would cost ~15 s of the budget).
    probe_train = Subset(train_set, range(min(len(train_set), int(s["probe_train_clips"]))))
    probe_loaders = [DataLoader(x, batch_size=128, collate_fn=collate_clips) for x in (probe_train, test_set)]
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=s["precision"] == "bf16"):
        probe_acc = centroid_probe(pretrainer.backbone, *probe_loaders)
    logger.info("pre-trained retrieval %s; nearest-centroid probe %s", retrieval, probe_acc)
    timings["pretrain"] = time.perf_counter() - t

    t = time.perf_counter()
    logger.info("step 4/4: supervised fine-tuning from the pre-trained backbone")
    ft_cfg = train_config("supervised", "finetune", init_from=str(out_dir / "pretrain" / "model"))
    finetuner = Trainer(ft_cfg, train_set, test_set, vocab)
    results = finetuner.fit()
    timings["finetune"] = time.perf_counter() - t

    def top1(entry: dict[str, Any]) -> dict[str, float]:
        return {"top1": entry["top1"], **({"top5": entry["top5"]} if "top5" in entry else {})}

    outputs = ("audio", "video", "fusion", "global", "average", "audio_only", "video_only")
    if "text" in names:
        outputs = (*names, "fusion", "global", "average", *(f"{m}_only" for m in names))
    metrics = {
        "wall_seconds": time.perf_counter() - t0,
        "timings_seconds": timings,
        **({"modalities": list(names)} if "text" in names else {}),
        "test": {name: top1(results[name]) for name in outputs if name in results},
        "retrieval": retrieval,
        "pretrain_probe_top1": probe_acc,
        "data": {"train_clips": len(train_set), "test_clips": len(test_set), "unreadable": unreadable, "shards": bool(d.get("shards", True)),
                 "espeak": info.get("espeak"), "classes": list(vocab.names) if hasattr(vocab, "names") else None},
        "settings": s,
        "audio_norm": {"mean": mean, "std": std},
    }
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    try:
        from zorro.plots import plot_confusion

        names = list(vocab.names) if hasattr(vocab, "names") else [str(i) for i in range(len(vocab))]
        plot_confusion(results["average"]["confusion"], names, out_dir / "confusion.png", title="AV-digits test (averaged heads)")
    except (ImportError, KeyError) as err:
        logger.warning("no confusion plot: %s", err)
    return metrics


def format_table(metrics: dict[str, Any]) -> str:
    """A short plain-text table of the demo's results (the tri-modal demo's: :func:`format_trimodal_table`)."""
    if metrics.get("modalities"):
        return format_trimodal_table(metrics)
    rows = [("output", "inputs", "test top-1")]
    for name, inputs in (("audio", "audio+video"), ("video", "audio+video"), ("fusion", "audio+video"), ("global", "audio+video"),
                         ("average", "audio+video"), ("audio_only", "audio"), ("video_only", "video")):
        if name in metrics["test"]:
            rows.append((name, inputs, f"{metrics['test'][name]['top1']:.3f}"))
    r = metrics["retrieval"]
    lines = [f"{a:<12}{b:<14}{c:>10}" for a, b, c in rows]
    lines.append(f"retrieval (pre-training only, class-level): a2v R@1 {r.get('a2v_r1', float('nan')):.3f}   v2a R@1 {r.get('v2a_r1', float('nan')):.3f}")
    if "pretrain_probe_top1" in metrics:
        probe = "  ".join(f"{k} {v:.3f}" for k, v in metrics["pretrain_probe_top1"].items())
        lines.append(f"pre-trained outputs, nearest-class-centroid top-1: {probe}")
    lines.append(f"wall time: {metrics['wall_seconds']:.0f} s")
    return "\n".join(lines)


def format_trimodal_table(metrics: dict[str, Any]) -> str:
    """The tri-modal demo's table: class-level retrieval after pre-training in every direction
    (R@1 / R@5), then the fine-tuned model's top-1 of each output given every input and of
    each modality given alone."""
    names = metrics["modalities"]
    r = metrics["retrieval"]
    nan = float("nan")
    lines = ["retrieval after pre-training alone (class-level, test split)", f"{'query -> gallery':<20}{'R@1':>8}{'R@5':>8}"]
    for q in names:
        for g in names:
            if q != g:
                key = f"{q[0]}2{g[0]}"
                lines.append(f"{q + ' -> ' + g:<20}{r.get(key + '_r1', nan):>8.3f}{r.get(key + '_r5', nan):>8.3f}")
    lines.append("")
    lines.append(f"{'fine-tuned output':<20}{'inputs':<18}{'test top-1':>10}")
    test = metrics["test"]
    for name in (*names, "fusion", "global", "average"):
        if name in test:
            lines.append(f"{name:<20}{'+'.join(names):<18}{test[name]['top1']:>10.3f}")
    for m in names:
        if f"{m}_only" in test:
            lines.append(f"{m + '_only':<20}{m:<18}{test[m + '_only']['top1']:>10.3f}")
    if "pretrain_probe_top1" in metrics:
        probe = "  ".join(f"{k} {v:.3f}" for k, v in metrics["pretrain_probe_top1"].items())
        lines.append(f"pre-trained outputs, nearest-class-centroid top-1: {probe}")
    lines.append(f"wall time: {metrics['wall_seconds']:.0f} s")
    return "\n".join(lines)
