"""What the clips of a run actually held, counted batch by batch and reported once.

:class:`DataReport` counts, over the batches it sees (``collate_clips`` batches), the clips,
those with audio and with video, and how much of the audio given to the model is zero
padding: a clip shorter than ``data.duration`` is padded with zeros up to the window (0.4 s
of speech in a 2 s window is 80 % zeros). The trainer counts its first epoch of training
batches and its first evaluation, logs one line per split (a warning when a quarter or more
of the audio is padding) and writes both to ``data_report.json`` in the run folder;
``zorro evaluate`` logs the same line for the data it evaluates.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Iterable, Iterator

import torch

__all__ = ["DataReport", "PADDING_WARNING_SHARE"]

logger = logging.getLogger("zorro.train")

#: A split whose audio is at least this share of padding is reported as a warning.
PADDING_WARNING_SHARE = 0.25


class DataReport:
    """Counts of one split's clips (see the module docstring).

    Args:
        split: what the clips are, for the message (``"training"``, ``"evaluation"``).
        duration: the window length (s) the clips were read at, for the message.
        sample_rate: audio rate (Hz), to turn sample counts into seconds.
    """

    def __init__(self, split: str, *, duration: float | None, sample_rate: int | None) -> None:
        self.split = split
        self.duration = duration
        self.sample_rate = sample_rate
        self.clips = 0
        self.with_audio = 0
        self.with_video = 0
        self.padded_clips = 0  # clips with audio of which part is padding
        self.audio_samples = 0  # samples given to the model (real + padding), clips with audio
        self.real_samples = 0
        self.shortest = math.inf  # fewest real samples of a clip with audio
        self.longest = 0
        self.with_extra: dict[str, int] = {}  # clips with each further modality (text, sequences), by name

    def update(self, batch: dict[str, Any]) -> None:
        """Count one batch (``collate_clips`` output; ``audio_valid_samples`` absent = all real)."""
        n = len(batch["label"])
        self.clips += n
        has_audio = batch["has_audio"]
        self.with_audio += int(has_audio.sum())
        self.with_video += int(batch["has_video"].sum())
        for key, flags in batch.items():
            if key.startswith("has_") and key not in ("has_audio", "has_video") and isinstance(flags, torch.Tensor):
                self.with_extra[key[4:]] = self.with_extra.get(key[4:], 0) + int(flags.sum())
        audio = batch.get("audio")
        if audio is None or not bool(has_audio.any()):
            return
        length = int(audio.shape[-1])
        valid = batch.get("audio_valid_samples")
        valid = torch.full((n,), length, dtype=torch.long) if valid is None else valid.clamp(max=length)
        valid = valid[has_audio]
        self.audio_samples += length * int(valid.numel())
        self.real_samples += int(valid.sum())
        self.padded_clips += int((valid < length).sum())
        self.shortest = min(self.shortest, int(valid.min()))
        self.longest = max(self.longest, int(valid.max()))

    def track(self, batches: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """Yield ``batches`` (e.g. a DataLoader), counting each."""
        for batch in batches:
            self.update(batch)
            yield batch

    def reduce_distributed(self) -> None:
        """Sum the counts of every process (and take the extremes) when a process group is
        up with more than one process; a no-op otherwise. Every process must call it."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return
        device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
        sums = torch.tensor([self.clips, self.with_audio, self.with_video, self.padded_clips, self.audio_samples, self.real_samples],
                            dtype=torch.float64, device=device)
        dist.all_reduce(sums)
        low = torch.tensor([self.shortest if math.isfinite(self.shortest) else 2.0**62], dtype=torch.float64, device=device)
        high = torch.tensor([self.longest], dtype=torch.float64, device=device)
        dist.all_reduce(low, op=dist.ReduceOp.MIN)
        dist.all_reduce(high, op=dist.ReduceOp.MAX)
        (self.clips, self.with_audio, self.with_video, self.padded_clips, self.audio_samples, self.real_samples) = (
            int(v) for v in sums.tolist())
        self.shortest = int(low.item()) if low.item() < 2.0**62 else math.inf
        self.longest = int(high.item())
        if self.with_extra:  # every process reads the same modalities (the run's model asks for them)
            names = sorted(self.with_extra)
            extra = torch.tensor([self.with_extra[n] for n in names], dtype=torch.float64, device=device)
            dist.all_reduce(extra)
            self.with_extra = {n: int(v) for n, v in zip(names, extra.tolist())}

    @property
    def padding_share(self) -> float:
        """Fraction of the audio samples given to the model that are zero padding (0 without audio)."""
        return 1.0 - self.real_samples / self.audio_samples if self.audio_samples else 0.0

    def summary(self) -> dict[str, Any]:
        """JSON-ready counts: ``clips``, ``with_audio``, ``with_video``, ``padded_clips``,
        ``audio_padding_share`` (fraction), and the real audio per clip in seconds
        (``shortest_audio_s``, ``longest_audio_s``, ``mean_audio_s``; None without audio or rate),
        and ``with_<name>`` for each further modality the batches described (text, ...)."""
        rate = self.sample_rate
        seconds = (lambda s: round(s / rate, 4)) if (rate and self.with_audio) else (lambda s: None)
        return {
            "clips": self.clips,
            "with_audio": self.with_audio,
            "with_video": self.with_video,
            "padded_clips": self.padded_clips,
            "audio_padding_share": round(self.padding_share, 6),
            "window_s": self.duration,
            "shortest_audio_s": seconds(self.shortest) if math.isfinite(self.shortest) else None,
            "longest_audio_s": seconds(self.longest),
            "mean_audio_s": seconds(self.real_samples / self.with_audio) if self.with_audio else None,
            **{f"with_{name}": count for name, count in self.with_extra.items()},
        }

    def message(self) -> str:
        """The one line that explains the split's clips (what :meth:`log` writes)."""
        s = self.summary()
        head = f"{self.split} data: {s['clips']} clips, {s['with_audio']} with audio, {s['with_video']} with video"
        head += "".join(f", {count} with {name}" for name, count in self.with_extra.items())
        if not self.padded_clips:
            return head + ("; no audio padding" if self.with_audio else "")
        window = f"the {self.duration:g} s window" if self.duration else "the window"
        text = (f"{head}; {self.padded_clips} of the clips with audio are shorter than {window}, and "
                f"{self.padding_share:.1%} of the audio samples given to the model are zero padding")
        if s["mean_audio_s"] is not None:
            text += (f" (real audio per clip {s['shortest_audio_s']:.2f}-{s['longest_audio_s']:.2f} s, mean {s['mean_audio_s']:.2f} s; "
                     f"data.duration sets the window: {s['longest_audio_s']:.2f} s keeps the longest clip whole)")
        return text

    def log(self) -> None:
        """Log :meth:`message` once: a warning when :data:`PADDING_WARNING_SHARE` or more of
        the audio is padding, else at INFO level."""
        level = logging.WARNING if self.padding_share >= PADDING_WARNING_SHARE else logging.INFO
        logger.log(level, "%s", self.message())
