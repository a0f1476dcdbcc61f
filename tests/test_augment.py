"""Two-view augmentations (zorro.augment) and the two-view contrastive objective."""

from __future__ import annotations

import math

import pytest
import torch

from zorro.augment import (
    ClipAugment,
    random_affine_intensity,
    random_illumination,
    random_speed,
    random_time_reverse,
    random_time_shift,
    random_translate,
    random_zoom,
)


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


def test_zoom_scales_about_the_centre_by_a_factor_in_range():
    # a centred bright square of side 8 in a 32x32 frame: its area scales with factor^2
    video = torch.zeros(5, 1, 2, 32, 32)
    video[..., 12:20, 12:20] = 1.0
    torch.manual_seed(0)
    out = random_zoom(video, (0.5, 2.0))
    assert out.shape == video.shape
    sides = []
    for clip in out:
        assert torch.equal(clip[:, 0], clip[:, 1])  # one factor for all frames of a clip
        mass = clip[0, 0]
        side = float(mass.sum()) ** 0.5
        sides.append(side)
        assert 0.5 * 8 - 1 <= side <= 2.0 * 8 + 1
        ys, xs = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
        cy, cx = float((mass * ys).sum() / mass.sum()), float((mass * xs).sum() / mass.sum())
        assert abs(cy - 15.5) < 0.5 and abs(cx - 15.5) < 0.5  # zoomed about the centre
    assert max(sides) - min(sides) > 1.0  # clips get their own factors
    assert torch.equal(random_zoom(video, (1.0, 1.0)), video)
    with pytest.raises(ValueError, match="scale"):
        random_zoom(video, (0.0, 1.0))


def test_speed_change_moves_a_tone_and_keeps_the_length():
    rate, n = 16000, 16000
    t = torch.arange(n) / rate
    audio = torch.sin(2 * torch.pi * 1000.0 * t).expand(3, n).clone()
    torch.manual_seed(3)
    out = random_speed(audio, (1.25, 1.25))
    assert out.shape == audio.shape
    spectrum = torch.fft.rfft(out[0, 4000:12000]).abs()  # the middle, away from the zero-padded ends
    peak_hz = float(spectrum.argmax()) * rate / 8000
    assert abs(peak_hz - 1250.0) < 10  # 25 % faster: the tone is 25 % higher
    assert float(out[0, :500].abs().max()) == 0.0  # sped up: the ends are padded with silence
    slow = random_speed(audio, (0.8, 0.8))
    assert float(slow[0, :500].abs().max()) > 0.5  # slowed down: nothing to pad
    assert torch.equal(random_speed(audio, (1.0, 1.0)), audio)
    with pytest.raises(ValueError, match="factor"):
        random_speed(audio, (1.2, 1.1))


def _speed_reference(audio: torch.Tensor, rate: torch.Tensor) -> torch.Tensor:
    """Linear-interpolation resampling about the centre in float64, zero outside the clip."""
    b, n = audio.shape
    centre = (n - 1) / 2.0
    pos = (torch.arange(n, dtype=torch.float64)[None, :] - centre) * rate + centre
    inside = (pos >= 0) & (pos <= n - 1)
    pos = pos.clamp(0, n - 1)
    left = pos.floor().long().clamp(max=n - 2)
    frac = pos - left
    x = audio.double()
    return ((x.gather(1, left) * (1 - frac) + x.gather(1, left + 1) * frac) * inside).float()


def test_speed_change_matches_a_float64_resampler():
    torch.manual_seed(6)
    audio = torch.randn(5, 16000)
    torch.manual_seed(7)
    out = random_speed(audio, (0.8, 1.25))
    torch.manual_seed(7)
    rate = torch.empty(5, 1, dtype=torch.float64).uniform_(0.8, 1.25)
    assert (out - _speed_reference(audio, rate)).abs().max() < 1e-2  # white noise: ~1.4 per sample of slope
    smooth = torch.sin(torch.arange(16000) * 0.01).expand(2, -1).contiguous()
    torch.manual_seed(8)
    out = random_speed(smooth, (0.8, 1.25))
    torch.manual_seed(8)
    rate = torch.empty(2, 1, dtype=torch.float64).uniform_(0.8, 1.25)
    assert (out - _speed_reference(smooth, rate)).abs().max() < 1e-4


def test_clip_augment_audio_is_the_composition_of_its_steps():
    torch.manual_seed(9)
    audio = torch.randn(4, 8000)
    aug = ClipAugment(speed=(0.8, 1.25), time_shift=0.25, gain=(0.5, 1.5), noise_std=0.01)
    torch.manual_seed(10)
    out = aug.audio(audio)
    torch.manual_seed(10)
    ref = random_time_shift(random_speed(audio, (0.8, 1.25)), 0.25)
    gain = torch.empty(4, 1).uniform_(0.5, 1.5)
    ref = ref * gain + 0.01 * torch.randn_like(ref)
    assert torch.allclose(out, ref, atol=1e-5)
    plain = ClipAugment(time_shift=0.25)  # no speed change: the shift alone
    torch.manual_seed(11)
    out = plain.audio(audio)
    torch.manual_seed(11)
    ref = random_time_shift(audio, 0.25) * torch.empty(4, 1).uniform_(0.5, 1.5)
    assert torch.allclose(out, ref + 0.005 * torch.randn_like(ref), atol=1e-6)


def test_illumination_adds_one_smooth_field_per_clip():
    torch.manual_seed(4)
    video = torch.rand(6, 3, 4, 32, 32)
    out = random_illumination(video, 0.2)
    field = out - video
    for f in field:
        assert torch.allclose(f, f[:1, :1].expand_as(f), atol=1e-6)  # same for every channel and frame
        assert float(f.abs().max()) <= 0.2 * 5  # scale <= amplitude times a few standard normals
        assert float((f[0, 0, :, 1:] - f[0, 0, :, :-1]).abs().max()) < 0.2  # smooth: small steps between pixels
    assert float(field.abs().amax(dim=(1, 2, 3, 4)).std()) > 0  # clips get their own fields
    assert torch.equal(random_illumination(video, 0.0), video)
    with pytest.raises(ValueError, match="amplitude"):
        random_illumination(video, -0.1)


def test_time_reverse_flips_whole_clips():
    video = torch.arange(4.0).reshape(1, 1, 4, 1, 1).expand(64, 1, 4, 2, 2).clone()
    torch.manual_seed(0)
    out = random_time_reverse(video, 0.5)
    flipped = (out[:, 0, 0, 0, 0] == 3.0)
    assert 10 < int(flipped.sum()) < 54
    assert torch.equal(out[flipped], video[flipped].flip(2)) and torch.equal(out[~flipped], video[~flipped])
    assert torch.equal(random_time_reverse(video, 0.0), video)
    assert torch.equal(random_time_reverse(video, 1.0), video.flip(2))
    with pytest.raises(ValueError, match="p must be"):
        random_time_reverse(video, 1.5)


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
    aug = ClipAugment(zoom=(0.8, 1.2), speed=(0.9, 1.1), illumination=0.1, video_noise=0.02, reverse=0.5)
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


def test_clip_augment_options_come_from_the_training_config():
    from zorro.train import build_augment

    aug = build_augment({"zoom": [0.8, 1.2], "speed": [0.9, 1.1]})
    assert aug.zoom == (0.8, 1.2) and aug.speed == (0.9, 1.1)
    with pytest.raises(ValueError, match="unknown augment options"):
        build_augment({"zooom": [1, 2]})


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


def test_cross_view_objective_averages_the_four_view_pairings():
    from toy import TINY_MODEL, ToyAV

    from zorro.data import collate_clips
    from zorro.losses import info_nce
    from zorro.model import Zorro
    from zorro.tasks import ZorroPretrainer
    from zorro.train import ContrastiveObjective, TrainConfig

    torch.manual_seed(0)
    task = ZorroPretrainer(Zorro(**TINY_MODEL), proj_dim=8)
    task.eval()  # no SpecAugment: the same views give the same projections
    data = ToyAV()
    batch = collate_clips([data[i] for i in range(6)])
    objective = ContrastiveObjective(task, fusion_weight=1.0, global_weight=1.0, intra_weight=0.3, cross_view=True)
    torch.manual_seed(1)
    loss, parts = objective(batch)
    # The same augmentation draws, by hand.
    torch.manual_seed(1)
    aug = objective.augment
    views_a = torch.cat([aug.audio(batch["audio"]), aug.audio(batch["audio"])])
    views_v = torch.cat([aug.video(batch["video"]), aug.video(batch["video"])])
    _, proj = task(audio=views_a, video=views_v)
    scale = task.head.logit_scale()
    a1, a2, v1, v2 = proj["audio"][:6], proj["audio"][6:], proj["video"][:6], proj["video"][6:]
    pairs = [info_nce(a, v, scale) for a, v in ((a1, v1), (a2, v2), (a1, v2), (a2, v1))]
    expected_av = sum(float(p) for p in pairs) / 4
    assert parts["audio_video_cross"] == pytest.approx(0.5 * float(pairs[2] + pairs[3]), rel=1e-5)
    expected = expected_av + parts["fusion"] + parts["global"] + 0.3 * (parts["audio_audio"] + parts["video_video"])
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    # Cross-view needs two views even without the intra-modal terms.
    only_cross = ContrastiveObjective(task, fusion_weight=0.0, global_weight=0.0, cross_view=True)
    _, parts_x = only_cross(batch)
    assert "audio_video_cross" in parts_x
    with pytest.raises(TypeError, match="cross_view"):
        ContrastiveObjective(task, fusion_weight=1.0, global_weight=1.0, cross_view="yes")
    with pytest.raises(TypeError, match="cross_view"):
        TrainConfig(task="pretrain", objective={"cross_view": 1})


@pytest.mark.parametrize("options, error", [
    ({"zoom": (0.0, 1.2)}, ValueError),
    ({"speed": (1.3, 1.1)}, ValueError),
    ({"contrast": (-0.1, 1.0)}, ValueError),
    ({"reverse": 1.5}, ValueError),
    ({"noise_std": -0.01}, ValueError),
    ({"time_shift": 1.0}, ValueError),  # a whole-clip rotation: used to pass here and fail at the first batch
    ({"time_shift": -0.1}, ValueError),
    ({"time_shift": "a bit"}, TypeError),
    ({"zoom": 1.2}, TypeError),
    ({"brightness": "a lot"}, TypeError),
    ({"gain": (0.5, float("nan"))}, TypeError),
])
def test_clip_augment_rejects_bad_options_at_construction(options, error):
    with pytest.raises(error, match=next(iter(options))):
        ClipAugment(**options)


def test_train_config_checks_augment_options_up_front():
    from zorro.train import TrainConfig

    with pytest.raises(ValueError, match="unknown augment options"):
        TrainConfig(objective={"augment": {"zooom": [0.8, 1.2]}})
    with pytest.raises(ValueError, match="zoom"):
        TrainConfig(objective={"augment": {"zoom": [1.2, 0.8]}})
    assert TrainConfig(objective={"augment": {"zoom": [0.8, 1.2]}}).objective.augment == {"zoom": [0.8, 1.2]}


# ------------------------------------------------------------------ fbank-domain augmentation


def _tone_fbank(freq_hz: float, frontend):
    t = torch.arange(16000) / 16000
    return frontend.features((0.3 * torch.sin(2 * math.pi * freq_hz * t))[None])  # (1, M, T)


def test_fbank_perturb_with_neutral_settings_returns_the_features():
    from zorro.audio import AudioFrontend
    from zorro.augment import random_fbank_perturb

    fe = AudioFrontend("fbank", num_mel_bins=40)
    feats = fe.features(0.1 * torch.randn(3, 16000))
    out = random_fbank_perturb(feats, fe.mel_centres_hz())
    torch.testing.assert_close(out, feats, atol=1e-5, rtol=0)


def test_fbank_shift_is_a_circular_roll_of_whole_frames():
    from zorro.audio import AudioFrontend
    from zorro.augment import random_fbank_perturb

    fe = AudioFrontend("fbank", num_mel_bins=40)
    feats = fe.features(0.1 * torch.randn(4, 16000))  # (4, 40, 98)
    torch.manual_seed(3)
    out = random_fbank_perturb(feats, fe.mel_centres_hz(), time_shift=0.3)
    rolled = []
    for i in range(4):
        match = [k for k in range(-29, 30) if torch.allclose(out[i], feats[i].roll(k, dims=-1), atol=1e-4)]
        assert len(match) == 1, f"clip {i} is not a whole-frame roll of its features"
        rolled.append(match[0])
    assert len(set(rolled)) > 1  # one draw per clip


def test_fbank_speed_moves_a_tone_like_playing_it_faster():
    from zorro.audio import AudioFrontend
    from zorro.augment import random_fbank_perturb

    fe = AudioFrontend("fbank", num_mel_bins=64)
    for rate, mode in ((1.25, "bilinear"), (0.8, "bilinear"), (1.25, "bicubic"), (0.8, "bicubic")):
        sped = random_fbank_perturb(_tone_fbank(1000.0, fe), fe.mel_centres_hz(), speed=(rate, rate), interpolation=mode)
        truth = _tone_fbank(1000.0 * rate, fe)
        peak = lambda x: int(x[0, :, 40:60].mean(-1).argmax())  # noqa: E731 (the band with most energy)
        assert abs(peak(sped) - peak(truth)) <= 1, rate
        assert abs(peak(sped) - peak(_tone_fbank(1000.0, fe))) >= 3, rate  # it did move


def test_fbank_gain_adds_twice_its_log_and_noise_floor_lifts_silence():
    from zorro.audio import AudioFrontend
    from zorro.augment import fbank_noise_floor, random_fbank_perturb

    fe = AudioFrontend("fbank", num_mel_bins=40)
    feats = fe.features(0.1 * torch.randn(2, 16000))
    out = random_fbank_perturb(feats, fe.mel_centres_hz(), gain=(2.0, 2.0))
    torch.testing.assert_close(out, feats + 2 * math.log(2.0), atol=1e-4, rtol=0)
    torch.manual_seed(0)
    state = torch.get_rng_state()
    floor = fbank_noise_floor(fe, 0.005)
    assert torch.equal(state, torch.get_rng_state())  # the global RNG did not move
    assert floor.shape == (40,) and bool((floor > 0).all())
    silence = torch.full((1, 40, 98), math.log(torch.finfo(torch.float32).eps))
    lifted = random_fbank_perturb(silence, fe.mel_centres_hz(), noise_floor=floor)
    noise_feats = fe.features(0.005 * torch.randn(8, 16000)).mean(dim=(0, 2))
    assert float((lifted[0].mean(-1) - noise_feats).abs().mean()) < 0.8  # log of mean vs mean of log


def test_fbank_perturb_and_clip_augment_reject_bad_input():
    from zorro.audio import AudioFrontend
    from zorro.augment import random_fbank_perturb

    fe = AudioFrontend("fbank", num_mel_bins=40)
    feats = torch.zeros(2, 40, 98)
    with pytest.raises(ValueError, match="3 dims"):
        random_fbank_perturb(feats[0], fe.mel_centres_hz())
    with pytest.raises(ValueError, match="mel_centres_hz"):
        random_fbank_perturb(feats, fe.mel_centres_hz()[:10])
    with pytest.raises(ValueError, match="time_shift"):
        random_fbank_perturb(feats, fe.mel_centres_hz(), time_shift=1.0)
    with pytest.raises(ValueError, match="audio_domain"):
        ClipAugment(audio_domain="spectrum")
    with pytest.raises(ValueError, match="fbank front-end"):
        ClipAugment(audio_domain="fbank").fbank(feats, AudioFrontend("spectrogram"))


def test_clip_augment_fbank_draws_from_the_global_rng_and_keeps_shape():
    from zorro.audio import AudioFrontend

    fe = AudioFrontend("fbank", num_mel_bins=40)
    aug = ClipAugment(speed=(0.8, 1.25), audio_domain="fbank")
    feats = fe.features(0.1 * torch.randn(5, 16000))
    torch.manual_seed(1)
    a = aug.fbank(feats, fe)
    torch.manual_seed(1)
    b = aug.fbank(feats, fe)
    assert a.shape == feats.shape and torch.equal(a, b) and not torch.allclose(a, feats)


def test_fbank_perturb_passes_gradients_through():
    from zorro.audio import AudioFrontend
    from zorro.augment import random_fbank_perturb

    fe = AudioFrontend("fbank", num_mel_bins=40)
    feats = fe.features(0.1 * torch.randn(2, 16000)).requires_grad_()
    out = random_fbank_perturb(feats, fe.mel_centres_hz(), speed=(0.9, 1.1), gain=(0.5, 2.0))
    out.sum().backward()
    assert feats.grad is not None and bool(torch.isfinite(feats.grad).all())


def test_fbank_tilt_is_linear_across_bands_and_noise_draws_keep_the_mean_floor():
    from zorro.audio import AudioFrontend
    from zorro.augment import fbank_noise_dof, fbank_noise_floor, random_fbank_perturb

    fe = AudioFrontend("fbank", num_mel_bins=40)
    feats = fe.features(0.1 * torch.randn(6, 16000))
    torch.manual_seed(0)
    diff = random_fbank_perturb(feats, fe.mel_centres_hz(), tilt=1.0) - feats  # (6, 40, T)
    torch.testing.assert_close(diff, diff[:, :, :1].expand_as(diff), atol=1e-4, rtol=0)  # the same in every frame
    per_band = diff[:, :, 0]
    slope = per_band[:, -1] - per_band[:, 0]
    torch.testing.assert_close(per_band, per_band[:, :1] + slope[:, None] * torch.linspace(0, 1, 40), atol=1e-4, rtol=0)
    assert bool((slope.abs() <= 1.0 + 1e-4).all()) and slope.std() > 0.1
    torch.testing.assert_close(per_band.mean(dim=1), torch.zeros(6), atol=1e-4, rtol=0)  # centred: no overall gain

    floor, dof = fbank_noise_floor(fe, 0.01), fbank_noise_dof(fe)
    assert bool((dof >= 1).all()) and dof[-1] > dof[0]  # wide high bands average more bins
    silence = torch.full((64, 40, 98), math.log(torch.finfo(torch.float32).eps))
    drawn = random_fbank_perturb(silence, fe.mel_centres_hz(), noise_floor=floor, noise_dof=dof)
    real = fe.features(0.01 * torch.randn(64, 16000))  # what the draws imitate: fbank of the noise itself
    assert float((drawn.mean(dim=(0, 2)) - real.mean(dim=(0, 2))).abs().max()) < 0.25
    assert float((drawn.std(dim=(0, 2)) - real.std(dim=(0, 2))).abs().max()) < 0.25
    flat = random_fbank_perturb(silence, fe.mel_centres_hz(), noise_floor=floor)
    assert float(flat.std(dim=(0, 2)).max()) < 1e-4  # without noise_dof: the mean floor, no draws


def test_fbank_noise_and_tilt_options_are_checked():
    from zorro.audio import AudioFrontend
    from zorro.augment import random_fbank_perturb

    fe = AudioFrontend("fbank", num_mel_bins=40)
    feats, centres = torch.zeros(2, 40, 98), fe.mel_centres_hz()
    with pytest.raises(ValueError, match="noise_dof needs a noise_floor"):
        random_fbank_perturb(feats, centres, noise_dof=torch.ones(40))
    with pytest.raises(ValueError, match="tilt"):
        random_fbank_perturb(feats, centres, tilt=-1.0)
    with pytest.raises(ValueError, match="interpolation"):
        random_fbank_perturb(feats, centres, interpolation="nearest")
    with pytest.raises(ValueError, match="spectral_tilt acts on fbank"):
        ClipAugment(spectral_tilt=1.0)
    with pytest.raises(TypeError, match="noise_draws"):
        ClipAugment(noise_draws="yes")
    assert ClipAugment(audio_domain="fbank", spectral_tilt=1.0).spectral_tilt == 1.0
