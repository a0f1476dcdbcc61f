"""Two-view augmentations (zorro.augment) and the two-view contrastive objective."""

from __future__ import annotations

import pytest
import torch

from zorro.augment import ClipAugment, random_affine_intensity, random_time_shift, random_translate


def test_translate_moves_every_frame_by_one_offset_within_the_bound():
    video = torch.zeros(6, 3, 4, 16, 16)
    video[:, :, :, 8, 8] = 1.0
    torch.manual_seed(0)
    out = random_translate(video, 3)
    assert out.shape == video.shape
    offsets = set()
    for i in range(6):
        where = (out[i] == 1.0).nonzero()
        assert len(where) == 3 * 4  # one pixel per channel and frame, never duplicated or lost
        ys, xs = where[:, 2].unique(), where[:, 3].unique()
        assert len(ys) == len(xs) == 1  # the same shift for all frames and channels
        dy, dx = int(ys) - 8, int(xs) - 8
        assert abs(dy) <= 3 and abs(dx) <= 3
        offsets.add((dy, dx))
    assert len(offsets) > 1  # clips get their own draws
    assert torch.equal(random_translate(video, 0), video)
    edge = torch.arange(16.0).expand(1, 1, 1, 16, 16).clone()  # value = column index
    shifted = random_translate(edge, 2)
    assert shifted.min() >= 0 and shifted.max() <= 15  # replicate padding: no wrap-around values


def test_time_shift_is_a_rotation_within_the_bound():
    audio = torch.arange(100.0).expand(5, 100).clone()
    torch.manual_seed(1)
    out = random_time_shift(audio, 0.1)
    for row in out:
        k = int((row[0] - 0) % 100)
        k = k if k <= 50 else k - 100
        assert abs(k) <= 10
        assert torch.equal(row, torch.roll(audio[0], -k))
    with pytest.raises(ValueError, match="max_fraction"):
        random_time_shift(audio, 1.0)


def test_intensity_jitter_is_affine_per_clip():
    torch.manual_seed(2)
    video = torch.rand(4, 3, 2, 8, 8)
    out = random_affine_intensity(video, (0.5, 1.5), 0.1)
    for x, y in zip(video, out):
        a = ((y - y.mean()) * (x - x.mean())).sum() / ((x - x.mean()) ** 2).sum()
        assert 0.5 <= float(a) <= 1.5
        o = (y - 0.5) - a * (x - 0.5)
        assert float(o.std()) < 1e-5 and abs(float(o.mean())) <= 0.1 + 1e-6
    with pytest.raises(ValueError, match="contrast"):
        random_affine_intensity(video, (0.0, 1.0), 0.1)


def test_clip_augment_is_reproducible_from_the_torch_seed_and_checks_inputs():
    aug = ClipAugment()
    video, audio = torch.rand(3, 3, 4, 16, 16), torch.randn(3, 1600)
    torch.manual_seed(5)
    first = aug.video(video), aug.audio(audio)
    torch.manual_seed(5)
    second = aug.video(video), aug.audio(audio)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    assert not torch.equal(aug.video(video), first[0])
    with pytest.raises(TypeError, match="floating-point"):
        aug.video(torch.zeros(3, 3, 4, 16, 16, dtype=torch.uint8))
    with pytest.raises(ValueError, match="5 dims"):
        aug.video(torch.rand(3, 4, 16, 16))
    with pytest.raises(ValueError, match="2 dims"):
        aug.audio(torch.randn(1600))


def test_two_view_objective_adds_the_intra_modal_terms():
    from toy import TINY_MODEL

    from zorro.model import Zorro
    from zorro.tasks import ZorroPretrainer
    from zorro.train import ContrastiveObjective

    from toy import ToyAV
    from zorro.data import collate_clips

    torch.manual_seed(0)
    task = ZorroPretrainer(Zorro(**TINY_MODEL), proj_dim=8)
    data = ToyAV()
    batch = collate_clips([data[i] for i in range(6)])
    one_view = ContrastiveObjective(task, fusion_weight=1.0, global_weight=1.0)
    two_view = ContrastiveObjective(task, fusion_weight=1.0, global_weight=1.0, intra_weight=0.7)
    _, parts_1 = one_view(batch)
    assert "audio_audio" not in parts_1
    loss, parts = two_view(batch)
    assert {"audio_video", "fusion", "global", "audio_audio", "video_video", "temperature"} <= set(parts)
    expected = parts["audio_video"] + parts["fusion"] + parts["global"] + 0.7 * (parts["audio_audio"] + parts["video_video"])
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    loss.backward()
    assert task.backbone.fusion_tokens.grad is not None
    with pytest.raises(ValueError, match="intra_weight"):
        ContrastiveObjective(task, fusion_weight=1.0, global_weight=1.0, intra_weight=-1.0)
