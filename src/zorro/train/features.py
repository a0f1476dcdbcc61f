"""The in-memory clip cache for small datasets: every clip decoded once, and optionally the
audio front-end's features of every clip computed once."""

from __future__ import annotations

import logging
import time
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from zorro.audio import AudioFrontend
from zorro.data import SkipTracker, batch_modalities, collate_clips

__all__ = ["CachedClips"]

logger = logging.getLogger("zorro.train")


class CachedClips(Dataset):
    """Every item of ``dataset`` decoded once and kept in memory (for small datasets).

    Items that could not be read are dropped and counted (``num_skipped``); they are logged
    by the :class:`~zorro.data.SkipTracker` used while caching. Items keep ``padded`` and
    ``audio_valid_samples``; ``dataset`` is the source (a run reads its clip settings there).
    """

    def __init__(self, dataset: Dataset, *, num_workers: int = 0, batch_size: int = 32) -> None:
        self.dataset = dataset  # the source: its clip settings are what a run records
        self.audio_features_key: tuple | None = None
        loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=collate_clips)
        tracker = SkipTracker()
        self.items: list[dict[str, Any]] = []
        for batch in loader:
            tracker.update(batch)
            for i in range(len(batch["index"])):
                label = batch["label"][i]
                item = {"label": int(label) if label.dim() == 0 else label, "index": len(self.items), "path": batch["path"][i]}
                item["audio"] = batch["audio"][i] if batch["audio"] is not None and batch["has_audio"][i] else None
                item["video"] = batch["video"][i] if batch["video"] is not None and batch["has_video"][i] else None
                item["padded"] = bool(batch["padded"][i])
                item["audio_valid_samples"] = int(batch["audio_valid_samples"][i])
                for name in batch_modalities(batch):  # text, feature sequences: unpadded, with their flag
                    if name in ("audio", "video"):
                        continue
                    has = bool(batch[f"has_{name}"][i])
                    item[f"has_{name}"] = has
                    item[name] = batch[name][i][batch[f"{name}_mask"][i]] if has else None
                self.items.append(item)
        self.num_skipped = tracker.end_epoch()
        if not self.items:
            raise ValueError("no clip of the dataset could be decoded")

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.items[index]

    @torch.no_grad()
    def add_audio_features(self, frontend: AudioFrontend, *, batch_size: int = 256) -> None:
        """Compute ``frontend.features`` of every clip's audio once and keep it as the item's
        ``audio_features`` (``(F, T)`` float32), replacing features from another front-end.

        Training objectives then skip the per-step front-end analysis (and, with
        ``ClipAugment(audio_domain="fbank")``, augment these features instead of the
        waveform). About 0.1 MB per one-second clip at 64 mel bins.
        """
        if not isinstance(frontend, AudioFrontend):
            raise TypeError(f"add_audio_features needs a zorro.audio.AudioFrontend (e.g. model.audio_frontend), got {type(frontend).__name__}")
        key = frontend.analysis_key()
        if key == self.audio_features_key:
            return
        t0 = time.perf_counter()
        with_audio = [it for it in self.items if it.get("audio") is not None]
        by_length: dict[int, list[dict[str, Any]]] = {}
        for it in with_audio:
            by_length.setdefault(int(it["audio"].shape[-1]), []).append(it)
        device = frontend.window.device
        for group in by_length.values():
            for i in range(0, len(group), batch_size):
                chunk = group[i : i + batch_size]
                feats = frontend.features(torch.stack([it["audio"] for it in chunk]).to(device)).cpu()
                for it, f in zip(chunk, feats):
                    it["audio_features"] = f
        self.audio_features_key = key
        logger.info("front-end features of %d clips computed in %.1f s", len(with_audio), time.perf_counter() - t0)
