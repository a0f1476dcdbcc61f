"""Protocol evaluation: one score per file (windows averaged), audio-only clips, dataset metrics."""

from __future__ import annotations

import pytest
import torch

from zorro.protocols import collect_file_scores, evaluate_protocol


class _Fixed(torch.nn.Module):
    """Logits = a fixed function of the inputs: audio -> mean of the waveform per class row."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.c = num_classes

    def forward(self, audio=None, video=None):
        out = {}
        if audio is not None:
            out["audio"] = audio[:, : self.c].float()
        if video is not None:
            out["video"] = video.flatten(1)[:, : self.c].float()
        return out


def _batch(audio, labels, paths, has_video=False):
    b = len(paths)
    return {"audio": audio, "video": torch.zeros(b, 4) if has_video else None, "label": labels, "path": paths,
            "has_audio": torch.ones(b, dtype=torch.bool), "has_video": torch.full((b,), has_video)}


def test_windows_of_one_file_are_averaged_and_audio_only_works():
    audio = torch.tensor([[1.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    labels = torch.tensor([1, 1, 2, 1])
    loader = [_batch(audio[:2], labels[:2], ["a.wav", "a.wav"]), _batch(audio[2:], labels[2:], ["b.wav", "c.wav"])]
    got = collect_file_scores(_Fixed(3), loader)
    assert got["paths"] == ["a.wav", "b.wav", "c.wav"] and got["num_windows"] == 4
    torch.testing.assert_close(got["scores"][0], torch.tensor([0.5, 1.5, 0.0]))
    assert got["targets"].tolist() == [1, 2, 1]
    out = evaluate_protocol(_Fixed(3), loader, "esc50")
    assert out["top1"] == 1.0 and out["num_files"] == 3
    per_window = evaluate_protocol(_Fixed(3), loader, "esc50", average_windows=False)
    assert per_window["top1"] == pytest.approx(0.75) and per_window["num_files"] == 4


def test_both_modalities_average_every_output():
    audio = torch.tensor([[0.0, 2.0], [2.0, 0.0]])
    loader = [_batch(audio, torch.tensor([1, 0]), ["x", "y"], has_video=True)]
    got = collect_file_scores(_Fixed(2), loader)
    torch.testing.assert_close(got["scores"], audio / 2)  # video logits are zeros


def test_protocol_errors():
    loader = [_batch(torch.ones(2, 2), torch.tensor([0, 1]), ["a", "a"])]
    with pytest.raises(ValueError, match="different labels"):
        collect_file_scores(_Fixed(2), loader)
    with pytest.raises(ValueError, match="unknown evaluation protocol"):
        evaluate_protocol(_Fixed(2), loader, "imagenet")
    with pytest.raises(ValueError, match="no clip"):
        collect_file_scores(_Fixed(2), [])
