"""``zorro audio-stats``: fbank (or spectrogram) normalisation statistics of a dataset, over
real audio only, and how long its clips really are."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

logger = logging.getLogger("zorro.cli")


def _frontend(args: argparse.Namespace):
    """The front-end to measure: a model's (``--model``: its analysis, without its
    normalisation) or one built from the options."""
    from zorro.audio import AudioFrontend

    if args.model:
        from zorro.hub import read_config
        from zorro.model import build_audio_frontend

        folder = Path(args.model)
        folder = folder / "model" if (folder / "model" / "config.json").exists() else folder
        config = read_config(folder)
        if args.sample_rate is not None and args.sample_rate != config.audio_sample_rate:
            raise ValueError(f"--sample-rate {args.sample_rate} differs from the model's {config.audio_sample_rate} Hz; leave it out to use the model's")
        return build_audio_frontend(config)
    return AudioFrontend(args.frontend, sample_rate=args.sample_rate or 16000, num_mel_bins=args.num_mel_bins)


def _cmd(args: argparse.Namespace) -> int:
    from torch.utils.data import DataLoader

    from zorro.audio_stats import RealAudioStats
    from zorro.data import ClipDataset, SkipTracker, collate_clips

    if bool(args.manifest) == bool(args.shards):
        raise ValueError("give the audio as --manifest or as --shards (one of them)")
    frontend = _frontend(args)
    rate = int(frontend.sample_rate)
    if args.shards:  # the waveforms training will see: resampled once, when the shards were prepared
        from zorro.data.shards.reader import ShardDataset

        dataset = ShardDataset(args.shards, train=False, video=False, duration=args.duration, sample_rate=rate)
    else:
        dataset = ClipDataset.from_manifest(
            args.manifest, train=False, video=False, duration=args.duration, sample_rate=rate, num_frames=1, image_size=32,
        )
    loader = DataLoader(dataset, batch_size=32, num_workers=args.num_workers, collate_fn=collate_clips)
    tracker = SkipTracker()
    stats = RealAudioStats(frontend)
    for batch in loader:
        tracker.update(batch)
        if batch["audio"] is not None and bool(batch["has_audio"].any()):
            keep = batch["has_audio"]
            stats.update(batch["audio"][keep], batch["audio_valid_samples"][keep])
    skipped = tracker.end_epoch()
    measured = stats.result(rate)
    result = {"audio_frontend": frontend.kind, "audio_mean": measured["audio_mean"], "audio_std": measured["audio_std"],
              "files": len(dataset), "unreadable": skipped, "sample_rate": rate, "window_seconds": args.duration,
              **{k: v for k, v in measured.items() if k not in ("audio_mean", "audio_std")}}
    print(json.dumps(result, indent=2))
    lengths = measured["clip_seconds"]
    logger.info("statistics over real audio only (%d values; %d clips too short for one frame, %.1f%% of the samples read were padding)",
                measured["values"], measured["clips_too_short"], 100 * measured["padding_share"])
    logger.info("clips hold %.2f-%.2f s of audio (median %.2f s, 90%% at most %.2f s; lengths are capped at the %.1f s window read): "
                "a data.duration near %.2f s keeps 90%% of the clips whole", lengths["min"], lengths["max"], lengths["median"],
                lengths["p90"], args.duration, lengths["p90"])
    logger.info("for a model trained from scratch: --set model.arch.audio_mean=%.6f --set model.arch.audio_std=%.6f",
                measured["audio_mean"], measured["audio_std"])
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``audio-stats`` to the ``zorro`` parser."""
    p = sub.add_parser("audio-stats", help="mean/std of the audio front-end's features over a manifest, and clip lengths",
                       description="Decodes the audio of every file of a manifest, or reads every sample of prepared shards (one "
                                   "centred window of --duration each), and prints the mean and standard deviation of the front-end "
                                   "features for model.arch.audio_mean/audio_std, over real audio only: the zero padding of clips "
                                   "shorter than the window is left out. Also prints how long the clips really are (clip_seconds), "
                                   "to choose data.duration from.")
    p.add_argument("--manifest", help="CSV/JSONL manifest or a folder-per-class tree (root/<class>/<file>)")
    p.add_argument("--shards", help="a prepared shard folder (`zorro prepare`) instead of a manifest: the audio exactly as training reads it")
    p.add_argument("--model", help="measure this model's front-end (a from_pretrained or run folder) instead of --frontend/--num-mel-bins/--sample-rate")
    p.add_argument("--frontend", choices=["fbank", "spectrogram"], default="fbank")
    p.add_argument("--num-mel-bins", type=int, default=128)
    p.add_argument("--sample-rate", type=int, help="rate the audio is decoded at (Hz; default 16000, or the --model's)")
    p.add_argument("--duration", type=float, default=10.0, help="seconds of audio read per file (the window; longer clips are cut to it)")
    p.add_argument("--num-workers", type=int, default=2)
    p.set_defaults(func=_cmd)
