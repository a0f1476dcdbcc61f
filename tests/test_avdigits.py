"""AV-digits demo data set: build, manifests, splits, media files, caching, eSpeak NG discovery."""

from __future__ import annotations

import ast
import csv
import json
import shutil
from collections import Counter
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

pytest.importorskip("sklearn")

from zorro.demo import avdigits, speech  # noqa: E402
from zorro.demo.avdigits import (  # noqa: E402
    ACCENTS,
    DIGIT_WORDS,
    TEST_ACCENTS,
    VARIANTS,
    build_avdigits,
    load_manifest,
    make_audio_track,
    render_digit_video,
    rgb_to_yuv420p,
    split_images,
    split_variants,
    write_clip,
)
from zorro.demo.speech import EspeakError, EspeakNotFoundError, espeak_available, find_espeak  # noqa: E402

HAVE_ESPEAK = espeak_available()
needs_espeak = pytest.mark.skipif(
    not HAVE_ESPEAK, reason="eSpeak NG unavailable (pip install espeakng-loader, or apt-get install espeak-ng)"
)

SMALL = dict(num_train=20, num_test=10, seed=0, duration=1.0, num_frames=8, image_size=32, sample_rate=16000)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    if not HAVE_ESPEAK:
        pytest.skip("eSpeak NG unavailable")
    root = tmp_path_factory.mktemp("avdigits")
    info = build_avdigits(root, workers=1, **SMALL)
    return root, info


def _rows(root: Path, split: str) -> list[dict[str, str]]:
    with open(root / f"{split}.csv", newline="") as handle:
        return list(csv.DictReader(handle))


@needs_espeak
def test_manifests_and_info(built):
    root, info = built
    assert json.loads((root / "info.json").read_text()) == info
    assert info["version"] == avdigits.AVDIGITS_VERSION
    assert info["params"] == {**SMALL, "colour_prob": 0.0}
    for split, count in (("train", 20), ("test", 10)):
        rows = _rows(root, split)
        assert len(rows) == count == info["counts"][split]["clips"]
        assert list(rows[0])[:2] == ["path", "label"]
        for row in rows:
            assert not Path(row["path"]).is_absolute()  # relative to the manifest's folder
            assert (root / row["path"]).is_file()
            assert row["label"] == DIGIT_WORDS[int(row["digit"])]
            assert 0.0 <= float(row["onset_s"]) and float(row["onset_s"]) + float(row["speech_s"]) <= 1.0 + 1e-6
        counts = Counter(row["label"] for row in rows)
        assert set(counts) == set(DIGIT_WORDS) and set(counts.values()) == {count // 10}
    loaded = load_manifest(root, "test")
    assert len(loaded) == 10 and all(Path(r["file"]).is_file() and isinstance(r["digit"], int) for r in loaded)
    with pytest.raises(ValueError):
        load_manifest(root, "val")


@needs_espeak
def test_splits_are_disjoint(built):
    root, info = built
    train, test = _rows(root, "train"), _rows(root, "test")
    # Voices: neither the accent nor the variant of a test clip occurs in training.
    assert {r["accent"] for r in test} <= set(TEST_ACCENTS)
    assert not {r["accent"] for r in train} & set(TEST_ACCENTS)
    assert not {r["voice"] for r in train} & {r["voice"] for r in test}
    assert not set(info["voices"]["train"]["variants"]) & set(info["voices"]["test"]["variants"])
    assert not set(info["voices"]["train"]["accents"]) & set(info["voices"]["test"]["accents"])
    assert {r["variant"] for r in test} <= set(info["voices"]["test"]["variants"])
    # Images: disjoint pools of load_digits indices, each clip drawn from its own pool.
    train_pool, test_pool = set(info["images"]["train"]), set(info["images"]["test"])
    assert not train_pool & test_pool and len(train_pool | test_pool) == 1797
    assert {int(r["image_index"]) for r in train} <= train_pool
    assert {int(r["image_index"]) for r in test} <= test_pool


@needs_espeak
def test_clips_decode(built):
    root, info = built
    n_samples = info["media"]["audio"]["samples"]
    for row in _rows(root, "train")[:3] + _rows(root, "test")[:2]:
        with av.open(str(root / row["path"])) as container:
            vstream, astream = container.streams.video[0], container.streams.audio[0]
            assert vstream.codec_context.name == "h264" and astream.codec_context.name == "aac"
            assert (vstream.width, vstream.height) == (32, 32)
            assert vstream.average_rate == Fraction(8, 1)
            assert astream.codec_context.sample_rate == 16000 and astream.codec_context.channels == 1
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        assert len(frames) == 8 and frames[0].shape == (32, 32, 3)
        assert np.std(np.stack(frames).astype(float)) > 5  # a drawn picture, not a flat frame
        with av.open(str(root / row["path"])) as container:
            audio_frames = list(container.decode(audio=0))
        assert audio_frames[0].pts == 0  # the edit list hides the AAC priming
        audio = np.concatenate([f.to_ndarray().reshape(-1) for f in audio_frames])
        # AAC pads the last 1024-sample frame: the first n_samples are the clip.
        assert n_samples <= audio.size < n_samples + 1024
        clip = audio[:n_samples]
        onset, length = float(row["onset_s"]), float(row["speech_s"])
        inside = clip[int(onset * 16000) : int((onset + length) * 16000)]
        assert np.abs(inside).max() > 0.2  # the utterance is where the manifest says
        assert np.abs(inside).max() <= 1.0


@needs_espeak
def test_cached_second_call_does_not_rebuild(built, monkeypatch):
    root, info = built
    stamp = (root / "info.json").stat().st_mtime_ns

    def fail(*args, **kwargs):
        raise AssertionError("rebuilt")

    monkeypatch.setattr(avdigits, "find_espeak", fail)
    assert build_avdigits(root, workers=1, **SMALL) == info
    assert (root / "info.json").stat().st_mtime_ns == stamp


@needs_espeak
def test_interrupted_or_changed_build_is_redone(tmp_path):
    root = tmp_path / "data"
    params = dict(SMALL, num_train=10, num_test=10, num_frames=4, image_size=16)
    build_avdigits(root, workers=1, **params)
    first = (root / "train.csv").read_text()
    (root / "info.json").unlink()  # as if the build had been interrupted before the end
    (root / "media" / "train" / "stray.mp4").write_bytes(b"junk")
    info = build_avdigits(root, workers=1, **params)
    assert (root / "train.csv").read_text() == first  # same parameters, same data set
    assert not (root / "media" / "train" / "stray.mp4").exists()
    info2 = build_avdigits(root, workers=1, **dict(params, seed=1))
    assert info2["params"]["seed"] == 1 and info2 != info
    assert len(list((root / "media" / "train").glob("*.mp4"))) == 10


@pytest.mark.slow
@needs_espeak
def test_workers_do_not_change_the_data(tmp_path, monkeypatch):
    monkeypatch.setattr(avdigits, "_PARALLEL_MIN_CLIPS", 0)
    monkeypatch.setattr(avdigits, "_CHUNK", 5)
    params = dict(SMALL, num_train=10, num_test=10, num_frames=4)
    build_avdigits(tmp_path / "one", workers=1, **params)
    build_avdigits(tmp_path / "two", workers=2, **params)
    for split in ("train", "test"):
        assert (tmp_path / "one" / f"{split}.csv").read_text() == (tmp_path / "two" / f"{split}.csv").read_text()
        for a in sorted((tmp_path / "one" / "media" / split).glob("*.mp4")):
            assert a.read_bytes() == (tmp_path / "two" / "media" / split / a.name).read_bytes()


def test_missing_espeak_gives_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(speech, "_candidate_specs", lambda backend: [])
    with pytest.raises(EspeakNotFoundError) as excinfo:
        build_avdigits(tmp_path / "data", num_train=10, num_test=10)
    message = str(excinfo.value)
    assert "pip install espeakng-loader" in message and "apt-get install espeak-ng" in message
    assert not (tmp_path / "data").exists()  # nothing touched
    assert not espeak_available()


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="even"):
        build_avdigits(tmp_path, num_train=10, num_test=10, image_size=33)
    with pytest.raises(ValueError, match="sample_rate"):
        build_avdigits(tmp_path, num_train=10, num_test=10, sample_rate=15000)
    with pytest.raises(ValueError, match="at least 1"):
        build_avdigits(tmp_path, num_train=0, num_test=0)
    with pytest.raises(TypeError, match="num_train"):
        build_avdigits(tmp_path, num_train=10.0, num_test=10)
    with pytest.raises(ValueError, match="duration"):
        build_avdigits(tmp_path, num_train=10, num_test=10, duration=0.0)
    with pytest.raises(ValueError, match="backend"):
        find_espeak("festival")
    assert not (tmp_path / "info.json").exists()


def test_split_helpers():
    train, test = split_variants(VARIANTS)
    assert "" in train and not set(train) & set(test)
    assert set(train) | set(test) == set(VARIANTS)
    assert 0.15 < len(test) / len(VARIANTS) < 0.25
    labels = np.repeat(np.arange(10), 30)
    tr, te = split_images(labels, seed=3)
    assert not set(tr) & set(te) and len(tr) + len(te) == labels.size
    assert all(np.sum(labels[te] == c) == 6 for c in range(10))
    assert set(TEST_ACCENTS) < set(ACCENTS)
    with pytest.raises(TypeError):
        split_variants("m1")


def test_render_and_audio_shapes(tmp_path):
    rng = np.random.default_rng(0)
    image = np.zeros((8, 8))
    image[2:6, 3:5] = 1.0
    video, meta = render_digit_video(image, rng, num_frames=5, image_size=24)
    assert video.shape == (5, 24, 24, 3) and video.dtype == np.uint8 and meta["colour"] in ("grey", "colour")
    speech_samples = (np.sin(np.arange(11025) / 5) * 20000).astype(np.int16)
    audio, ameta = make_audio_track(speech_samples, 22050, rng, duration=1.0, sample_rate=16000)
    assert audio.shape == (16000,) and audio.dtype == np.float32
    assert abs(ameta["speech_s"] - 0.5) < 0.02 and ameta["onset_s"] + ameta["speech_s"] <= 1.0
    long_speech = np.tile(speech_samples, 4)  # 2 s of "speech" in a 1 s clip: cut with a fade
    audio, ameta = make_audio_track(long_speech, 22050, rng, duration=1.0, sample_rate=16000)
    assert audio.shape == (16000,) and ameta["onset_s"] == 0.0
    write_clip(tmp_path / "x.mp4", video[:, :24, :24], audio, fps=5, sample_rate=16000)
    with av.open(str(tmp_path / "x.mp4")) as container:
        assert len(list(container.decode(video=0))) == 5
    with pytest.raises(ValueError, match="even"):
        write_clip(tmp_path / "y.mp4", video[:, :23, :23], audio, fps=5, sample_rate=16000)


def test_rgb_to_yuv420p_matches_swscale_and_round_trips(tmp_path):
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:32, 0:32]
    smooth = np.stack([xx * 8, yy * 8, (xx + yy) * 4], axis=-1).clip(0, 255).astype(np.uint8)  # smooth gradients
    ours = rgb_to_yuv420p(smooth).astype(int)
    ref = av.VideoFrame.from_ndarray(smooth, format="rgb24").reformat(format="yuv420p").to_ndarray().astype(int)
    assert ours.shape == ref.shape == (48, 32)
    assert np.abs(ours[:32] - ref[:32]).max() <= 1  # luma: same BT.601 limited-range matrix as swscale
    assert np.abs(ours[32:] - ref[32:]).max() <= 6  # chroma: swscale filters the subsampling differently
    video = np.stack([smooth] * 4)
    write_clip(tmp_path / "g.mp4", video, np.zeros(16000, np.float32), fps=4, sample_rate=16000)
    with av.open(str(tmp_path / "g.mp4")) as container:
        back = [f.to_ndarray(format="rgb24").astype(int) for f in container.decode(video=0)]
    assert len(back) == 4 and np.abs(back[0] - smooth).mean() < 4  # colours survive the encode/decode
    odd = (rng.random((6, 8, 3)) * 255).astype(np.uint8)  # H not a multiple of 4: swscale path
    write_clip(tmp_path / "o.mp4", np.stack([odd] * 2), np.zeros(16000, np.float32), fps=2, sample_rate=16000)
    with pytest.raises(ValueError, match="multiple of 4"):
        rgb_to_yuv420p(odd)


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="no espeak-ng program on PATH")
def test_cli_backend():
    engine = find_espeak("cli")
    samples = engine.synthesize("seven", "en-us+f3", speed=200, pitch=60)
    assert samples.dtype == np.int16 and samples.size > 0.2 * engine.sample_rate
    with pytest.raises(EspeakError):
        engine.synthesize("seven", "zz-nope")
    with pytest.raises(ValueError):
        engine.synthesize("seven", "en", speed=10)


@needs_espeak
def test_library_backend_is_repeatable():
    engine = find_espeak("auto")
    engine.reset()
    first = engine.synthesize("three", "en-029+klatt", speed=180, pitch=40)
    engine.synthesize("nine", "en+whisper", speed=140, pitch=70)
    engine.reset()
    again = engine.synthesize("three", "en-029+klatt", speed=180, pitch=40)
    assert np.array_equal(first, again)
    with pytest.raises(EspeakError):
        engine.synthesize("three", "zz-nope")


def test_demo_does_not_import_model_or_training_code():
    for name in ("__init__.py", "avdigits.py", "speech.py"):
        tree = ast.parse((Path(avdigits.__file__).parent / name).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith("zorro.") or node.module.startswith("zorro.demo"), node.module
            if isinstance(node, ast.Import):
                assert all(not a.name.startswith("zorro.") or a.name.startswith("zorro.demo") for a in node.names)


def test_colour_prob_controls_the_clip_colours():
    import numpy as np

    image = np.zeros((8, 8))
    image[2:6, 3:5] = 1.0
    rng = np.random.default_rng(0)
    kinds = {avdigits.render_digit_video(image, rng, num_frames=2, image_size=16)[1]["colour"] for _ in range(20)}
    assert kinds == {"grey"}
    kinds = {avdigits.render_digit_video(image, rng, num_frames=2, image_size=16, colour_prob=1.0)[1]["colour"] for _ in range(5)}
    assert kinds == {"colour"}
    with pytest.raises(ValueError, match="colour_prob"):
        avdigits.render_digit_video(image, rng, num_frames=2, image_size=16, colour_prob=1.5)


def test_grey_clips_draw_dark_ink_and_motion_bounds_the_travel():
    image = np.zeros((8, 8))
    image[1:7, 1:7] = 1.0  # a solid block, so the ink's centre of mass is the digit's centre
    rng = np.random.default_rng(1)
    for _ in range(10):
        video, _ = render_digit_video(image, rng, num_frames=4, image_size=32)
        frame = video[0, :, :, 0].astype(float)
        assert frame[14:18, 14:18].mean() < frame[0:3, 0:3].mean() - 40  # ink darker than the corner background
    for motion, bound in ((0.0, 1.0), (1.0, 9.0)):
        offsets = []
        for _ in range(20):
            video, _ = render_digit_video(image, rng, num_frames=4, image_size=32, motion=motion)
            ink = 255.0 - video[..., 0].astype(float)
            ink -= np.median(ink, axis=(1, 2), keepdims=True)
            ink = np.clip(ink, 0, None)
            yy, xx = np.mgrid[0:32, 0:32]
            cy = (ink * yy).sum(axis=(1, 2)) / ink.sum(axis=(1, 2))
            cx = (ink * xx).sum(axis=(1, 2)) / ink.sum(axis=(1, 2))
            offsets.append(np.abs(np.stack([cy, cx]) - 15.5).max())
        assert max(offsets) <= bound, (motion, max(offsets))
    assert max(offsets) > 2.0  # full motion does move the digit
    with pytest.raises(ValueError, match="motion"):
        render_digit_video(image, rng, num_frames=2, image_size=16, motion=1.5)
    with pytest.raises(ValueError, match="size_range"):
        render_digit_video(image, rng, num_frames=2, image_size=16, size_range=(0.5, 0.95))
