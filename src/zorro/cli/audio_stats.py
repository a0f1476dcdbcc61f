"""``zorro audio-stats``: fbank (or spectrogram) normalisation statistics of a dataset."""

from __future__ import annotations

import argparse
import json
import logging

logger = logging.getLogger("zorro.cli")


def _cmd(args: argparse.Namespace) -> int:
    from torch.utils.data import DataLoader

    from zorro.audio import AudioFrontend, compute_audio_stats
    from zorro.data import ClipDataset, SkipTracker, collate_clips

    if bool(args.manifest) == bool(args.shards):
        raise ValueError("give the audio as --manifest or as --shards (one of them)")
    if args.shards:  # the waveforms training will see: resampled once, when the shards were prepared
        from zorro.data.shards.reader import ShardDataset

        dataset = ShardDataset(args.shards, train=False, video=False, duration=args.duration, sample_rate=args.sample_rate)
    else:
        dataset = ClipDataset.from_manifest(
            args.manifest, train=False, video=False, duration=args.duration, sample_rate=args.sample_rate, num_frames=1, image_size=32,
        )
    frontend = AudioFrontend(args.frontend, sample_rate=args.sample_rate, num_mel_bins=args.num_mel_bins)
    loader = DataLoader(dataset, batch_size=32, num_workers=args.num_workers, collate_fn=collate_clips)
    tracker = SkipTracker()

    def waveforms():
        for batch in loader:
            tracker.update(batch)
            if batch["audio"] is not None:
                yield batch["audio"][batch["has_audio"]]

    mean, std = compute_audio_stats(waveforms(), frontend)
    skipped = tracker.end_epoch()
    result = {"audio_frontend": args.frontend, "audio_mean": mean, "audio_std": std, "files": len(dataset), "unreadable": skipped}
    print(json.dumps(result, indent=2))
    logger.info("pass these to the model config: --set model.arch.audio_mean=%.6f --set model.arch.audio_std=%.6f", mean, std)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``audio-stats`` to the ``zorro`` parser."""
    p = sub.add_parser("audio-stats", help="mean/std of the audio front-end's features over a manifest",
                       description="Decodes the audio of every file of a manifest, or reads every sample of prepared shards (one centred clip each), and prints the "
                                   "mean and standard deviation of the front-end features, for model.arch.audio_mean/audio_std.")
    p.add_argument("--manifest", help="CSV/JSONL manifest or a folder-per-class tree (root/<class>/<file>)")
    p.add_argument("--shards", help="a prepared shard folder (`zorro prepare`) instead of a manifest: the audio exactly as training reads it")
    p.add_argument("--frontend", choices=["fbank", "spectrogram"], default="fbank")
    p.add_argument("--num-mel-bins", type=int, default=128)
    p.add_argument("--sample-rate", type=int, default=16000)
    p.add_argument("--duration", type=float, default=10.0, help="seconds of audio read per file")
    p.add_argument("--num-workers", type=int, default=2)
    p.set_defaults(func=_cmd)
