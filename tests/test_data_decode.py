"""Decoding real media files into time-aligned clips (zorro.data.read_clip)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import media  # noqa: E402

from zorro.data import CropBox, DecodeError, MediaReader, available_backends, probe, read_clip  # noqa: E402
from zorro.data import decode as decode_module  # noqa: E402
from zorro.data.decode import audio_samples  # noqa: E402

SR = 16000
LEVEL_TOL = 6.0  # grey levels (0..255) lost to lossy coding
BACKENDS = ["pyav", "torchcodec"]


@pytest.fixture(scope="session")
def suite(tmp_path_factory):
    return media.build_suite(tmp_path_factory.mktemp("media"))


@pytest.fixture(params=BACKENDS)
def backend(request):
    if request.param not in available_backends():
        pytest.skip(f"{request.param} not installed")
    return request.param


def _levels(clip) -> np.ndarray:
    """Grey level (green channel, frame centre) of each frame, 0..255."""
    v = clip.video
    return (v[1, :, v.shape[2] // 2, v.shape[3] // 2] * 255).numpy()


def _check_frames(clip, duration, num_frames):
    """Every frame is the one displayed at its target time and its pixels match its timestamp."""
    targets = clip.start + (np.arange(num_frames) + 0.5) * duration / num_frames
    times = clip.frame_times.numpy()
    assert np.all(times <= targets + 1e-6), (times, targets)
    assert np.all(targets - times < 0.1), (times, targets)  # 25 fps: within a frame or two
    expected = np.array([media.level_at(t) for t in times])
    np.testing.assert_allclose(_levels(clip), expected, atol=LEVEL_TOL)


def _onset(audio: torch.Tensor, thr: float = 0.1) -> int:
    idx = np.nonzero(np.abs(audio.numpy()) > thr)[0]
    assert len(idx), "no signal above threshold"
    return int(idx[0])


def _peak_hz(audio: torch.Tensor, sr: int = SR) -> float:
    a = audio.numpy() * np.hanning(audio.shape[0])
    spec = np.abs(np.fft.rfft(a))
    return float(np.argmax(spec) * sr / a.shape[0])


@pytest.mark.parametrize("name", ["mp4", "webm", "avi", "mpg", "mkv6"])
def test_formats_shapes_and_frame_alignment(suite, backend, name):
    clip = read_clip(suite[name], start=0.3, duration=1.0, num_frames=4, image_size=32, backend=backend)
    assert clip.has_audio and clip.has_video
    assert clip.audio.shape == (SR,) and clip.audio.dtype == torch.float32
    assert float(clip.audio.abs().max()) <= 1.0
    assert clip.video.shape == (3, 4, 32, 32) and clip.video.dtype == torch.float32
    assert 0.0 <= float(clip.video.min()) and float(clip.video.max()) <= 1.0
    assert clip.start == pytest.approx(0.3) and clip.duration == 1.0
    assert clip.path == str(suite[name]) and not clip.padded
    _check_frames(clip, 1.0, 4)


@pytest.mark.parametrize("name", ["mp4", "webm", "avi"])
def test_audio_burst_lands_at_its_time(suite, backend, name):
    # the tone burst is at [1.0, 1.2) s in the file; window starts at 0.5 s
    clip = read_clip(suite[name], start=0.5, duration=1.0, num_frames=2, image_size=16, backend=backend)
    onset = _onset(clip.audio)
    assert abs(onset - 0.5 * SR) <= 0.003 * SR, onset
    tail = np.nonzero(np.abs(clip.audio.numpy()) > 0.1)[0][-1]
    assert abs(tail - 0.7 * SR) <= 0.003 * SR, tail
    assert float(clip.audio[: int(0.45 * SR)].abs().max()) < 0.05  # silence before the burst


def test_six_channel_48k_downmixed_and_resampled(suite, backend):
    clip = read_clip(suite["mkv6"], start=0.2, duration=1.0, num_frames=2, image_size=16, backend=backend)
    assert clip.audio.shape == (SR,)
    assert _peak_hz(clip.audio) == pytest.approx(440.0, abs=3.0)
    rms = float(clip.audio.pow(2).mean().sqrt())
    assert rms == pytest.approx(0.5 / np.sqrt(2), rel=0.1)  # the tone on every channel keeps its level


def test_resampler_is_band_limited(suite):
    # 12 kHz tone at 48 kHz: above the 8 kHz Nyquist limit of 16 kHz output. A nearest-sample
    # decimator would alias it to a full-amplitude 4 kHz tone (RMS ~0.35).
    clip = read_clip(suite["alias"], start=0.2, duration=1.0, num_frames=2, image_size=16)
    assert not clip.has_video and clip.video is None
    assert float(clip.audio.pow(2).mean().sqrt()) < 0.01


def test_late_audio_stream(suite, backend):
    info = probe(suite["late"])
    assert info.audio_start == pytest.approx(0.5, abs=0.06) and info.video_start == pytest.approx(0.0, abs=1e-6)
    clip = read_clip(suite["late"], duration=1.0, num_frames=4, image_size=16, backend=backend)
    assert clip.start == pytest.approx(info.start) and clip.start > 0.4  # earliest window with both
    assert clip.audio_valid_samples >= SR - 0.01 * SR
    # burst at 1.0 s still lands at its time relative to the window start
    assert abs(_onset(clip.audio) - (1.0 - clip.start) * SR) <= 0.003 * SR
    _check_frames(clip, 1.0, 4)
    early = read_clip(suite["late"], start=0.0, duration=1.0, num_frames=4, image_size=16, backend=backend)
    assert early.padded and early.audio_valid_samples < 0.6 * SR
    assert float(early.audio[: int(0.4 * SR)].abs().max()) == 0.0


def test_variable_frame_rate(suite, backend):
    clip = read_clip(suite["vfr"], start=0.0, duration=1.6, num_frames=8, image_size=16, backend=backend)
    targets = (np.arange(8) + 0.5) * 0.2
    vt = np.array(media.VFR_TIMES)
    expected = np.array([vt[vt <= t].max() for t in targets])
    np.testing.assert_allclose(clip.frame_times.numpy(), expected, atol=2e-3)
    np.testing.assert_allclose(_levels(clip), [media.level_at(t) for t in expected], atol=LEVEL_TOL)


def test_container_start_time_nonzero(suite):
    info = probe(suite["mpg"])
    clip = read_clip(suite["mpg"], duration=1.0, num_frames=4, image_size=16)
    assert clip.start == pytest.approx(info.start)
    _check_frames(clip, 1.0, 4)


def test_missing_streams(suite, backend):
    clip = read_clip(suite["noaudio"], duration=1.0, num_frames=4, image_size=16, backend=backend)
    assert clip.has_video and not clip.has_audio and clip.audio is None and clip.audio_valid_samples == 0
    clip = read_clip(suite["novideo"], duration=1.0, num_frames=4, image_size=16, backend=backend)
    assert clip.has_audio and not clip.has_video and clip.video is None
    assert clip.audio.shape == (SR,)
    with pytest.raises(DecodeError, match="noaudio"):
        read_clip(suite["noaudio"], duration=1.0, num_frames=4, image_size=16, video=False, backend=backend)


def test_short_file_is_padded(suite, backend):
    clip = read_clip(suite["mp4"], start=1.0, duration=2.0, num_frames=8, image_size=16, sample_rate=8000, backend=backend)
    assert clip.audio.shape == (16000,) and clip.video.shape == (3, 8, 16, 16)
    assert clip.padded
    assert clip.audio_valid_samples == pytest.approx(8000, abs=80)
    assert clip.video_valid_frames == 4
    assert float(clip.audio[9000:].abs().max()) < 0.01  # zeros after the end
    # padding repeats the last decoded frame
    torch.testing.assert_close(clip.video[:, 7], clip.video[:, 3])


def test_corrupt_first_audio_packet_keeps_the_rest(suite, backend):
    clip = read_clip(suite["corrupt_audio"], start=0.0, duration=1.0, num_frames=4, image_size=16, backend=backend)
    assert clip.has_audio
    rest = clip.audio[int(0.2 * SR):]
    assert _peak_hz(rest) == pytest.approx(440.0, abs=3.0)
    assert float(rest.pow(2).mean().sqrt()) > 0.25


def test_truncated_webm_keeps_what_decodes(suite):
    clip = read_clip(suite["truncated_webm"], start=0.0, duration=1.0, num_frames=4, image_size=16)
    assert clip.has_video and clip.has_audio
    _check_frames(clip, 1.0, 4)
    with pytest.raises(DecodeError):  # past the cut: nothing to decode
        read_clip(suite["truncated_webm"], start=1.8, duration=1.0, num_frames=4, image_size=16)


@pytest.mark.parametrize("name", ["garbage", "empty", "missing", "truncated_mp4"])
def test_unreadable_files_raise_decode_error_naming_the_file(suite, backend, name):
    with pytest.raises(DecodeError) as err:
        read_clip(suite[name], duration=1.0, num_frames=4, image_size=16, backend=backend)
    assert str(suite[name]) in str(err.value) and err.value.path == str(suite[name])


def test_directory_raises(tmp_path):
    with pytest.raises(DecodeError, match="directory"):
        read_clip(tmp_path, duration=1.0, num_frames=2, image_size=8)


def test_center_crop_and_flip(suite, backend):
    # red strip covers the left quarter (x < 16 of 64); centre crop keeps x in [8, 56)
    clip = read_clip(suite["mp4"], start=0.0, duration=0.5, num_frames=1, image_size=48, backend=backend)
    red, green = clip.video[0, 0], clip.video[1, 0]
    assert float(red[:, :6].mean()) > 0.9  # crop columns 0..8 are red
    assert float((red[:, 12:] - green[:, 12:]).abs().max()) < 0.1
    flipped = read_clip(
        suite["mp4"], start=0.0, duration=0.5, num_frames=1, image_size=48, crop=CropBox(8, 0, 48, 48, flip=True), backend=backend
    )
    torch.testing.assert_close(flipped.video, clip.video.flip(-1), atol=2 / 255, rtol=0)


def test_random_crop_is_deterministic_given_rng(suite):
    kw = dict(start=0.0, duration=0.5, num_frames=2, image_size=24, crop="random")
    a = read_clip(suite["mp4"], rng=np.random.default_rng(5), **kw)
    b = read_clip(suite["mp4"], rng=np.random.default_rng(5), **kw)
    torch.testing.assert_close(a.video, b.video)
    crops = {read_clip(suite["mp4"], rng=np.random.default_rng(s), **kw).video[0, 0].sum().item() for s in range(6)}
    assert len(crops) > 1
    with pytest.raises(ValueError, match="rng"):
        read_clip(suite["mp4"], **kw)


def test_upscales_small_frames_and_larger_outputs(suite):
    clip = read_clip(suite["mp4"], start=0.0, duration=0.5, num_frames=2, image_size=96)
    assert clip.video.shape == (3, 2, 96, 96)


def test_backends_agree(suite):
    if "torchcodec" not in available_backends():
        pytest.skip("torchcodec not installed")
    for name in ("mp4", "webm", "vfr", "mkv6"):
        a = read_clip(suite[name], start=0.25, duration=1.0, num_frames=4, image_size=32)
        b = read_clip(suite[name], start=0.25, duration=1.0, num_frames=4, image_size=32, backend="torchcodec")
        torch.testing.assert_close(a.frame_times, b.frame_times, atol=1e-3, rtol=0)
        assert float((a.video - b.video).abs().mean()) < 0.02, name
        assert float(a.audio.pow(2).mean().sqrt()) == pytest.approx(float(b.audio.pow(2).mean().sqrt()), rel=0.05)
        if name in ("mp4", "webm"):  # tone bursts: same onset up to a sub-millisecond phase
            assert abs(_onset(a.audio) - _onset(b.audio)) <= 0.001 * SR, name


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(duration=0.0, num_frames=4, image_size=16), "duration"),
        (dict(duration=1.0, num_frames=0, image_size=16), "num_frames"),
        (dict(duration=1.0, num_frames=4, image_size=-1), "image_size"),
        (dict(duration=1.0, num_frames=4, image_size=16, sample_rate=0), "sample_rate"),
        (dict(duration=1.0, num_frames=4, image_size=16, crop="zoom"), "crop"),
        (dict(duration=1.0, num_frames=4, image_size=16, backend="ffmpeg"), "backend"),
        (dict(duration=1.0, num_frames=4, image_size=16, start=float("nan")), "start"),
    ],
)
def test_bad_arguments_raise_value_error(suite, kwargs, match):
    with pytest.raises(ValueError, match=match):
        read_clip(suite["mp4"], **kwargs)


def test_reader_reuse_and_info(suite):
    with MediaReader(suite["mp4"]) as r:
        assert r.info.has_audio and r.info.has_video and (r.info.width, r.info.height) == (64, 48)
        assert r.info.duration == pytest.approx(2.0, abs=0.05)
        a = r.read(start=0.1, duration=0.5, num_frames=2, image_size=16)
        b = r.read(start=1.1, duration=0.5, num_frames=2, image_size=16)
        c = r.read(start=0.1, duration=0.5, num_frames=2, image_size=16)
    torch.testing.assert_close(a.video, c.video)
    torch.testing.assert_close(a.audio, c.audio)
    assert not torch.equal(a.video, b.video)


def test_data_package_does_not_import_the_model():
    src = Path(__file__).resolve().parents[1] / "src" / "zorro" / "data"
    for f in src.rglob("*.py"):  # the subpackages (decode/, shards/, ...) too
        text = f.read_text()
        for banned in ("zorro.model", "zorro.layers", "zorro.train", "zorro.cli", "torchaudio", "torchvision"):
            pattern = rf"^\s*(from|import)\s+{re.escape(banned)}\b"
            assert not re.search(pattern, text, re.MULTILINE), f"{f.name} imports {banned}"
        assert not re.search(r"(?<![\w.])print\(", text), f"{f.name} prints"


def test_bframes_skipping_never_drops_a_picked_frame(suite, backend):
    # x264 veryfast: B-frames, some unreferenced (decoded with skip_frame=NONREF when unneeded)
    with av.open(str(suite["bframes"])) as c:
        types = {int(f.pict_type) for f in c.decode(video=0)}
    assert 3 in types, types  # AV_PICTURE_TYPE_B
    for start, dur, n in ((0.0, 3.0, 16), (0.37, 1.3, 7), (1.01, 0.5, 5)):
        clip = read_clip(suite["bframes"], start=start, duration=dur, num_frames=n, image_size=16, backend=backend)
        targets = start + (np.arange(n) + 0.5) * dur / n
        expected = np.floor(targets * 25 + 1e-9) / 25
        np.testing.assert_allclose(clip.frame_times.numpy(), expected, atol=1e-6)
        np.testing.assert_allclose(_levels(clip), [media.level_at(t) for t in expected], atol=LEVEL_TOL)


def _all_frame_times(path) -> np.ndarray:
    with av.open(str(path)) as c:
        return np.sort([float(f.time) for f in c.decode(video=0)])


def _key_times(path) -> np.ndarray:
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        return np.sort([float(p.pts * s.time_base) for p in c.demux(s) if p.is_keyframe and p.pts is not None])


@pytest.mark.parametrize("start, dur, n", [(0.0, 3.0, 8), (0.2, 2.5, 5), (1.0, 1.9, 3)])
def test_exact_mode_seeks_between_keyframes_without_changing_frames(suite, start, dur, n):
    # bframes.mp4 has a keyframe every 12 frames: targets spanning keyframes are decoded in
    # separate runs; every frame must still be the one displayed at its target
    path = suite["bframes"]
    keys = _key_times(path)
    targets = start + (np.arange(n) + 0.5) * dur / n
    assert any(((keys > a) & (keys <= b)).any() for a, b in zip(targets[:-1], targets[1:]))
    clip = read_clip(path, start=start, duration=dur, num_frames=n, image_size=16)
    ft = _all_frame_times(path)
    expected = np.array([ft[ft <= t + 1e-9].max() for t in targets])
    np.testing.assert_allclose(clip.frame_times.numpy(), expected, atol=1e-6)
    np.testing.assert_allclose(_levels(clip), [media.level_at(t) for t in expected], atol=LEVEL_TOL)
    assert clip.video_valid_frames == n


@pytest.mark.parametrize("backend_name", ["pyav", "torchcodec"])
def test_keyframe_seek_mode_reports_the_keyframe_times(suite, backend_name):
    if backend_name not in available_backends():
        pytest.skip(f"{backend_name} not installed")
    path = suite["bframes"]
    keys = _key_times(path)
    start, dur, n = 0.1, 2.8, 7
    clip = read_clip(path, start=start, duration=dur, num_frames=n, image_size=16, seek_mode="keyframe", backend=backend_name)
    targets = start + (np.arange(n) + 0.5) * dur / n
    expected = np.array([keys[keys <= t + 1e-9].max() for t in targets])
    np.testing.assert_allclose(clip.frame_times.numpy(), expected, atol=1e-6)
    np.testing.assert_allclose(_levels(clip), [media.level_at(t) for t in expected], atol=LEVEL_TOL)
    assert clip.video_valid_frames == n and clip.audio.shape == (int(round(dur * SR)),)
    exact = read_clip(path, start=start, duration=dur, num_frames=n, image_size=16, backend=backend_name)
    torch.testing.assert_close(clip.audio, exact.audio)  # audio is unaffected


def test_keyframe_seek_mode_pads_past_the_end(suite):
    clip = read_clip(suite["bframes"], start=2.0, duration=2.0, num_frames=4, image_size=16, seek_mode="keyframe")
    assert clip.padded and clip.video_valid_frames == 2
    torch.testing.assert_close(clip.video[:, 3], clip.video[:, 1])


@pytest.mark.parametrize("name", ["webm", "mpg", "vfr"])
def test_keyframe_seek_mode_other_containers(suite, name):
    clip = read_clip(suite[name], start=0.3, duration=1.0, num_frames=4, image_size=16, seek_mode="keyframe")
    targets = 0.3 + (np.arange(4) + 0.5) * 0.25
    times = clip.frame_times.numpy()
    assert np.all(times <= targets + 1e-6) and np.all(np.diff(times) >= 0)
    np.testing.assert_allclose(_levels(clip), [media.level_at(t) for t in times], atol=LEVEL_TOL)


def test_fast_decode_keeps_times_and_stays_close(suite):
    kw = dict(start=0.2, duration=2.5, num_frames=6, image_size=32)
    exact = read_clip(suite["bframes"], **kw)
    fast = read_clip(suite["bframes"], fast_decode=True, **kw)
    torch.testing.assert_close(fast.frame_times, exact.frame_times)
    assert float((fast.video - exact.video).abs().max()) * 255 <= LEVEL_TOL
    torch.testing.assert_close(fast.audio, exact.audio)
    # codecs without a deblocking filter to skip decode exactly
    a = read_clip(suite["webm"], **dict(kw, duration=1.5))
    b = read_clip(suite["webm"], fast_decode=True, **dict(kw, duration=1.5))
    torch.testing.assert_close(a.video, b.video)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(seek_mode="fast"), ValueError, "seek_mode"),
        (dict(seek_mode=1), TypeError, "seek_mode"),
        (dict(fast_decode="yes"), TypeError, "fast_decode"),
        (dict(threads=True), ValueError, "threads"),
    ],
)
def test_bad_decoder_options(suite, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        read_clip(suite["mp4"], duration=1.0, num_frames=2, image_size=16, **kwargs)


# -- the planned exact path (one demux pass, decoding stops at the last shown frame) --------


def _packet_by_packet(monkeypatch):
    """Force exact decoding through the general (seek per run, pick by decoded time) path."""
    monkeypatch.setattr(decode_module.MediaReader, "_pyav_planned_frames", lambda self, *a: None)


def _spy_planned(monkeypatch) -> list[bool]:
    """Record, per clip, whether the planned exact path produced the frames (True) or gave up."""
    used: list[bool] = []
    planned = decode_module.MediaReader._pyav_planned_frames

    def spy(self, *args):
        out = planned(self, *args)
        used.append(out is not None)
        return out

    monkeypatch.setattr(decode_module.MediaReader, "_pyav_planned_frames", spy)
    return used


@pytest.mark.parametrize(
    "name, start, dur, n",
    [
        ("bframes", 0.0, 3.0, 8),
        ("bframes", 0.37, 1.3, 7),
        ("bframes", 1.01, 0.5, 5),
        ("bframes", 2.0, 2.0, 6),  # past the end: padding
        ("mp4", 0.25, 1.0, 4),
        ("mp4", 1.2, 1.5, 5),  # past the end: padding
        ("webm", 0.1, 1.7, 6),
        ("vfr", 0.0, 1.6, 8),
        ("vfr", 0.7, 1.5, 6),  # past the end, frames far apart
        ("mkv6", 0.2, 1.0, 3),
        ("late", None, 1.0, 4),
        ("avi", 0.3, 1.0, 4),
    ],
)
@pytest.mark.parametrize("threads", [0, 1])
def test_planned_exact_path_matches_the_packet_by_packet_path(suite, monkeypatch, name, start, dur, n, threads):
    kw = dict(start=start, duration=dur, num_frames=n, image_size=24, threads=threads, audio=False)
    used = _spy_planned(monkeypatch)
    fast = read_clip(suite[name], **kw)
    assert used == [True], "the planned path gave up on a plain file"
    _packet_by_packet(monkeypatch)
    slow = read_clip(suite[name], **kw)
    assert torch.isfinite(fast.frame_times).all()
    assert torch.equal(fast.frame_times, slow.frame_times)
    assert torch.equal(fast.video, slow.video)  # bit-identical pixels
    assert fast.video_valid_frames == slow.video_valid_frames


def test_planned_exact_path_decodes_nothing_after_the_last_target(suite, monkeypatch):
    # bframes.mp4: keyframe every 12 frames and B-frames. Every packet fed to the decoder must
    # decode at or before the last target (the general path decoded a few frames past each
    # run's last target to see that the next frame starts later).
    path = suite["bframes"]
    start, dur, n = 0.1, 2.6, 6
    targets = start + (np.arange(n) + 0.5) * dur / n
    fed: list[tuple[float, float]] = []  # (decode time, presentation time) in s
    feed_run = decode_module.MediaReader._feed_run

    def spy(cc, packets, first, last, want):
        for p in packets[first : last + 1]:
            fed.append((float(p.dts * p.time_base), float(p.pts * p.time_base)))
        return feed_run(cc, packets, first, last, want)

    monkeypatch.setattr(decode_module.MediaReader, "_feed_run", staticmethod(spy))
    clip = read_clip(path, start=start, duration=dur, num_frames=n, image_size=16)
    ft = _all_frame_times(path)
    expected = np.array([ft[ft <= t + 1e-9].max() for t in targets])
    np.testing.assert_allclose(clip.frame_times.numpy(), expected, atol=1e-6)
    assert fed and max(d for d, _ in fed) <= targets[-1] + 1e-9
    assert len({p for _, p in fed}) == len(fed)  # no packet decoded twice
    assert max(p for _, p in fed) <= expected[-1] + 0.1  # at most a reordering delay beyond


def test_mpeg_ps_video_uses_the_packet_by_packet_path(suite, monkeypatch):
    # MPEG-PS packets carry timestamps on only some frames: they cannot plan the decode
    calls = []
    monkeypatch.setattr(decode_module.MediaReader, "_feed_run", staticmethod(lambda *a: calls.append(a) or iter(())))
    clip = read_clip(suite["mpg"], start=0.3, duration=1.0, num_frames=4, image_size=16)
    assert not calls and clip.video_valid_frames == 4
    _check_frames(clip, 1.0, 4)



@pytest.fixture(scope="module")
def low_fps(tmp_path_factory):
    """2 fps h264 with B-frames (x264 medium): a B-frame can follow, in decode order, a
    P-frame shown more than a second after it."""
    d = tmp_path_factory.mktemp("lowfps")
    return {
        "mp4": media.make_media(d / "lowfps.mp4", fps=2, duration=12.0, x264_preset="medium"),
        "mkv": media.make_media(d / "lowfps.mkv", container_format="matroska", fps=2, duration=12.0, x264_preset="medium"),
    }


@pytest.mark.parametrize("container", ["mp4", "mkv"])  # mkv: packets without decode timestamps
@pytest.mark.parametrize("path_kind", ["planned", "packet_by_packet"])
@pytest.mark.parametrize("threads", [0, 1])
def test_low_frame_rate_bframes_keep_exact_frames(low_fps, monkeypatch, container, path_kind, threads):
    # regression: the packet-by-packet path stopped at the first packet shown 1 s after the
    # last target, before the B-frames decoded after it (here the frames shown at the
    # targets), and frames drained from the decoder had NaN times: wrong frames + padding
    path = low_fps[container]
    with av.open(str(path)) as c:
        types = [int(f.pict_type) for f in c.decode(video=0)]
    assert 3 in types  # AV_PICTURE_TYPE_B
    used: list[bool] = []
    if path_kind == "packet_by_packet":
        _packet_by_packet(monkeypatch)
    else:
        used = _spy_planned(monkeypatch)
    ft = _all_frame_times(path)
    for start, dur, n in ((0.0, 6.0, 3), (1.0, 8.0, 4), (0.0, 12.0, 5)):
        clip = read_clip(path, start=start, duration=dur, num_frames=n, image_size=16, threads=threads)
        targets = start + (np.arange(n) + 0.5) * dur / n
        expected = np.array([ft[ft <= t + 1e-9].max() for t in targets])
        np.testing.assert_allclose(clip.frame_times.numpy(), expected, atol=1e-6)
        np.testing.assert_allclose(_levels(clip), [media.level_at(t) for t in expected], atol=LEVEL_TOL)
        assert clip.video_valid_frames == n and not clip.padded
    past = read_clip(path, start=3.0, duration=12.0, num_frames=6, image_size=16, threads=threads)
    assert past.video_valid_frames == 5 and past.padded  # the last target is 2.5 s past the end
    torch.testing.assert_close(past.video[:, 5], past.video[:, 4])
    assert all(used)  # the planned path handled every window (mkv: without decode timestamps)


# -- audio conversion helpers ------------------------------------------------------------


@pytest.mark.parametrize("layout", ["mono", "stereo", "5.1"])
@pytest.mark.parametrize("rate, sr", [(48000, 16000), (22050, 16000), (16000, 16000)])
def test_downmix_resample_equals_downmix_then_resample(layout, rate, sr):
    channels = av.AudioLayout(layout).nb_channels
    buf = np.random.default_rng(0).uniform(-0.9, 0.9, (channels, rate // 3 + 7)).astype(np.float32)
    lay = av.AudioLayout(layout)
    got = audio_samples._downmix_resample(buf, lay, rate, sr)
    want = audio_samples._resample(audio_samples._downmix(buf, lay), rate, sr)
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("fmt", ["fltp", "flt", "s16", "s16p", "s32", "dbl"])
def test_audio_channels_match_the_generic_conversion(fmt):
    rng = np.random.default_rng(1)
    src = av.AudioFrame.from_ndarray(rng.uniform(-1, 1, (2, 1000)).astype(np.float32), format="fltp", layout="stereo")
    src.sample_rate = 48000
    frame = av.AudioResampler(format=fmt, layout="stereo", rate=48000).resample(src)[0]
    got = audio_samples._audio_channels(frame, 2)
    want = audio_samples._audio_to_planar_float(frame)
    assert len(got) == 2
    for c in range(2):
        assert got[c].dtype == np.float32 and got[c].shape == (frame.samples,)
        np.testing.assert_array_equal(got[c], want[c])
