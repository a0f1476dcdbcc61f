"""AV-digits: a small audio-visual data set of spoken and handwritten digits.

Each clip pairs an utterance of a digit word ("zero".."nine"), synthesised by eSpeak NG
with a random English accent, voice variant, speed and pitch, with a handwritten image
of the same digit from scikit-learn's ``load_digits`` (1,797 images, 8x8) animated into
a short video: bilinearly scaled, moving along a random curved path, on a noisy grey or
coloured background. The utterance and the image come from independent sources, so the
digit is the only information the two streams share.

Splits are disjoint in both sources:

* voices: the test split uses only the accents in :data:`TEST_ACCENTS` and only the
  voice variants picked by :func:`split_variants`; training uses neither;
* images: :func:`split_images` holds out a stratified 20 % of ``load_digits`` for test.

Clips are real media files, ``root/media/{split}/{split}_{index:05d}.mp4``: H.264 video
(yuv420p, ``image_size`` squared, constant ``num_frames / duration`` frames per second,
no B-frames) and AAC-LC audio (mono, ``sample_rate`` Hz, starting at time 0). Manifests
``root/train.csv`` and ``root/test.csv`` list them with paths *relative to the manifest's
folder* (``root``), and a ``text`` column with a caption naming the digit
(:mod:`zorro.demo.captions`: the test split's templates are held out from training);
``root/info.json`` records the build (it is written last, so a partial build is redone by
the next call).
"""

from __future__ import annotations

import csv
import json
import logging
import math
import multiprocessing
import os
import shutil
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from zorro.demo.captions import caption
from zorro.demo.speech import Espeak, EspeakSpec, find_espeak, open_espeak

__all__ = [
    "AVDIGITS_VERSION",
    "DIGIT_WORDS",
    "ACCENTS",
    "TEST_ACCENTS",
    "VARIANTS",
    "build_avdigits",
    "load_manifest",
    "split_variants",
    "split_images",
    "render_digit_video",
    "make_audio_track",
    "write_clip",
    "rgb_to_yuv420p",
]

logger = logging.getLogger(__name__)

#: Bumped whenever the content of a build with the same parameters changes.
AVDIGITS_VERSION = 5

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

#: English accents of eSpeak NG (``espeak-ng --voices=en``).
ACCENTS = (
    "en", "en-us", "en-gb-x-rp", "en-029", "en-gb-x-gbclan", "en-gb-x-gbcwmd",
    "en-gb-scotland", "en-us-nyc",
)
#: Accents used only by the test split (one British, one American: new, not alien).
TEST_ACCENTS = ("en-gb-scotland", "en-us-nyc")

#: Voice variants (``espeak-ng-data/voices/!v``) present in eSpeak NG 1.51 and 1.52;
#: ``""`` is the accent's own default voice. Those missing from an install are skipped.
VARIANTS = (
    "", "Alex", "Alicia", "Andrea", "Andy", "Annie", "AnxiousAndy", "Demonic", "Denis",
    "Diogo", "Gene", "Gene2", "Henrique", "Hugo", "Jacky", "Lee", "Marco", "Mario",
    "Michael", "Mike", "Nguyen", "RicishayMax", "RicishayMax2", "RicishayMax3", "Storm",
    "Tweaky", "UniRobot", "adam", "anika", "anikaRobot", "announcer", "antonio", "aunty",
    "belinda", "benjamin", "boris", "caleb", "croak", "david", "ed", "edward", "edward2",
    "f1", "f2", "f3", "f4", "f5", "fast", "grandma", "grandpa", "gustave", "iven", "iven2",
    "iven3", "iven4", "john", "kaukovalta", "klatt", "klatt2", "klatt3", "klatt4",
    "klatt5", "klatt6", "linda", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8",
    "marcelo", "max", "michel", "miguel", "norbert", "pablo", "paul", "pedro", "quincy",
    "rob", "robert", "robosoft", "robosoft2", "robosoft3", "robosoft4", "robosoft5",
    "robosoft6", "robosoft7", "robosoft8", "sandro", "shelby", "steph", "steph2",
    "steph3", "travis", "victor", "whisper", "whisperf", "zac",
)

IMAGE_TEST_FRACTION = 0.2
SPEED_RANGE = (120, 260)  # words per minute
PITCH_RANGE = (20, 80)  # eSpeak pitch, 0..99
GAIN_RANGE = (0.3, 0.9)  # peak amplitude of the speech
DIGIT_SIZE_RANGE = (0.6, 0.85)  # digit cell side at the first frame, fraction of the frame
MOTION_FRACTION = 0.3  # travel of the digit's centre, fraction of the room in the frame
SNR_DB_RANGE = (15.0, 35.0)  # speech RMS over background-noise RMS
_AAC_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
_PARALLEL_MIN_CLIPS = 64  # below this a worker pool costs more than it saves
_CHUNK = 25  # clips made after each synthesiser reset; fixed, so builds do not depend on workers


# ----------------------------------------------------------------------------- splits


def split_variants(variants: tuple[str, ...] | list[str] = VARIANTS) -> tuple[list[str], list[str]]:
    """Split voice variants into training and test ones, deterministically.

    Sorted case-insensitively, every fifth variant (positions 2, 7, 12, ...) goes to test;
    the accent's default voice (``""``) always stays in training.

    Args:
        variants: variant names.

    Returns:
        ``(train_variants, test_variants)``, disjoint lists.
    """
    if isinstance(variants, str):
        raise TypeError("variants must be a sequence of names, not a string")
    ordered = sorted({str(v) for v in variants if v}, key=lambda v: (v.lower(), v))
    test = [v for i, v in enumerate(ordered) if i % 5 == 2]
    train = ([""] if "" in variants else []) + [v for i, v in enumerate(ordered) if i % 5 != 2]
    return train, test


def split_images(labels: np.ndarray, seed: int = 0, test_fraction: float = IMAGE_TEST_FRACTION) -> tuple[np.ndarray, np.ndarray]:
    """Split image indices into training and test ones, stratified by class.

    Args:
        labels: int array of shape ``(num_images,)``, the class of each image.
        seed: random seed.
        test_fraction: fraction of each class held out for test, in (0, 1).

    Returns:
        ``(train_indices, test_indices)``: sorted int64 arrays, disjoint, covering all images;
        each class has at least one image on each side when it has two or more.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.size == 0:
        raise ValueError(f"labels must be a non-empty 1-D array, got shape {labels.shape}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    rng = np.random.default_rng([seed, 1])
    train, test = [], []
    for cls in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        n_test = min(max(1, round(test_fraction * idx.size)), idx.size - 1) if idx.size > 1 else 0
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return np.sort(np.concatenate(train)).astype(np.int64), np.sort(np.concatenate(test)).astype(np.int64)


# ----------------------------------------------------------------------------- video


def _tent_weights(centres: np.ndarray, sizes: np.ndarray, out_size: int, src_size: int) -> np.ndarray:
    """Bilinear (tent) sampling weights, shape (T, out_size, src_size), zero outside the source.

    Output pixel p (centre p + 0.5) of frame t looks at source coordinate
    (p + 0.5 - centres[t]) / sizes[t] * src_size + src_size / 2 - 0.5.
    """
    p = np.arange(out_size, dtype=np.float64) + 0.5
    src = (p[None, :] - centres[:, None]) / sizes[:, None] * src_size + src_size / 2 - 0.5
    return np.maximum(0.0, 1.0 - np.abs(src[:, :, None] - np.arange(src_size)[None, None, :]))


def _luminance(rgb: np.ndarray) -> float:
    return float(0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2])


def render_digit_video(
    image: np.ndarray,
    rng: np.random.Generator,
    *,
    num_frames: int,
    image_size: int,
    colour_prob: float = 0.0,
    size_range: tuple[float, float] = DIGIT_SIZE_RANGE,
    motion: float = MOTION_FRACTION,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Animate a small digit image into a video.

    The digit is scaled (bilinearly) to a random size that changes slowly and moves along a
    random quadratic path around the frame centre. Grey clips (the default) draw dark ink on
    a lighter grey background, as in the original scans; with probability ``colour_prob``
    the ink and background are random colours instead. The background carries a static
    low-frequency texture and every frame gets Gaussian noise.

    How much nuisance to add was measured (video-only Zorro, the demo's model, 2,000 clips,
    10 epochs, test on unseen digit images): travel over the whole frame, sizes 45-80 % of
    the frame and random ink polarity gave 0.49 top-1; dark ink alone 0.72; small travel
    and larger digits alone 0.82; both 0.94. Random colours for half the clips kept the
    model at chance for 600 steps.

    Args:
        image: float array of shape ``(h, w)``, ink intensity in [0, 1] (``load_digits``
            images divided by 16).
        rng: random generator; all randomness comes from it.
        num_frames: number of frames ``T`` (>= 1).
        image_size: frame height and width ``S`` in pixels.
        colour_prob: probability in [0, 1] of drawing the clip in random colours.
        size_range: ``(low, high)`` side of the digit's whole 8x8 cell at the first frame,
            as fractions of ``S`` in (0, 0.9]; it changes by a factor in [0.8, 1.25] by the
            last frame.
        motion: how far the digit's centre may travel from the frame centre, as a fraction
            in [0, 1] of the room that keeps the digit inside the frame.

    Returns:
        ``(video, meta)``: uint8 array of shape ``(T, S, S, 3)`` (RGB) and a dict of the
        drawn parameters (``colour``: ``"grey"``/``"colour"``, start/end digit size in px).
    """
    image = np.asarray(image, dtype=np.float64)
    if image.ndim != 2 or min(image.shape) < 1:
        raise ValueError(f"image must be a 2-D array, got shape {image.shape}")
    if num_frames < 1 or image_size < 4:
        raise ValueError(f"need num_frames >= 1 and image_size >= 4, got {num_frames}, {image_size}")
    lo_size, hi_size = (float(x) for x in size_range)
    if not 0.0 < lo_size <= hi_size <= 0.9:
        raise ValueError(f"size_range must satisfy 0 < low <= high <= 0.9, got {tuple(size_range)}")
    if not 0.0 <= motion <= 1.0:
        raise ValueError(f"motion must be in [0, 1], got {motion}")
    S, T = int(image_size), int(num_frames)
    alpha_src = np.clip(image, 0.0, 1.0)

    # Digit size (side of the whole 8x8 cell, in pixels) at the start and end, then a path.
    size0 = S * rng.uniform(lo_size, hi_size)
    size1 = float(np.clip(size0 * rng.uniform(0.8, 1.25), 0.35 * S, 0.9 * S))
    t = np.linspace(0.0, 1.0, T) if T > 1 else np.zeros(1)
    sizes = size0 + (size1 - size0) * t

    def centre_range(size: float) -> tuple[float, float]:
        margin = 0.45 * size  # the digits have blank borders, so a little may leave the frame
        half = (S / 2 - margin) * motion
        return S / 2 - half, S / 2 + half

    lo0, hi0 = centre_range(size0)
    lo1, hi1 = centre_range(size1)
    start = rng.uniform(lo0, hi0, size=2)
    end = rng.uniform(lo1, hi1, size=2)
    bend = rng.uniform(min(lo0, lo1), max(hi0, hi1), size=2)
    path = ((1 - t) ** 2)[:, None] * start + (2 * (1 - t) * t)[:, None] * bend + (t**2)[:, None] * end
    path += rng.normal(0.0, 0.3, size=path.shape)  # hand-held jitter, in pixels
    lo = np.minimum(lo0, lo1) + np.zeros_like(sizes)
    hi = np.maximum(hi0, hi1) + np.zeros_like(sizes)
    path = np.clip(path, lo[:, None], hi[:, None])

    wy = _tent_weights(path[:, 0], sizes, S, alpha_src.shape[0])  # (T, S, h)
    wx = _tent_weights(path[:, 1], sizes * alpha_src.shape[1] / alpha_src.shape[0], S, alpha_src.shape[1])
    alpha = np.clip(np.einsum("tyi,ij,txj->tyx", wy, alpha_src, wx), 0.0, 1.0)[..., None]

    # Colours with enough luminance contrast between ink and background.
    if not 0.0 <= colour_prob <= 1.0:
        raise ValueError(f"colour_prob must be in [0, 1], got {colour_prob}")
    grey = bool(rng.random() >= colour_prob)
    if grey:
        bg = np.full(3, rng.uniform(0.45, 1.0))
        fg = np.clip(bg - rng.uniform(0.35, bg[0]), 0.0, 1.0)  # ink at least 0.35 darker
    else:
        bg = rng.uniform(0.0, 1.0, size=3)
        fg = rng.uniform(0.0, 1.0, size=3)
        for _ in range(32):
            if abs(_luminance(fg) - _luminance(bg)) >= 0.3:
                break
            fg = rng.uniform(0.0, 1.0, size=3)
        else:
            fg = 1.0 - bg if abs(_luminance(1.0 - bg) - _luminance(bg)) >= 0.3 else np.full(3, float(_luminance(bg) < 0.5))

    # Static low-frequency texture: a coarse random grid, bilinearly upsampled.
    coarse = rng.normal(0.0, 1.0, size=(4, 4, 1 if grey else 3))
    ones = np.full(1, float(S))
    wgrid = _tent_weights(np.full(1, S / 2), ones, S, 4)[0]  # (S, 4)
    texture = np.einsum("yi,ijc,xj->yxc", wgrid, coarse, wgrid) * rng.uniform(0.0, 0.12)
    background = bg[None, None, :] + texture

    noise_std = rng.uniform(0.01, 0.08)
    frames = background[None] * (1.0 - alpha) + fg[None, None, None, :] * alpha
    noise = rng.normal(0.0, noise_std, size=(T, S, S, 1 if grey else 3))
    frames = np.clip(frames + noise, 0.0, 1.0)
    video = np.round(frames * 255.0).astype(np.uint8)
    if video.shape[-1] != 3:
        video = np.repeat(video, 3, axis=-1)
    meta = {"colour": "grey" if grey else "colour", "size_start_px": round(size0, 2), "size_end_px": round(size1, 2)}
    return video, meta


# ----------------------------------------------------------------------------- audio


def _resample(samples: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """int16 or float mono samples at rate_in -> float32 in [-1, 1] at rate_out (libswresample)."""
    import av

    samples = np.asarray(samples)
    if samples.dtype != np.int16:
        samples = np.round(np.clip(samples, -1.0, 1.0) * 32767).astype(np.int16)
    if rate_in == rate_out:
        return samples.astype(np.float32) / 32768.0
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[None, :]), format="s16", layout="mono")
    frame.sample_rate = int(rate_in)
    resampler = av.AudioResampler(format="flt", layout="mono", rate=int(rate_out), threads=1)  # see zorro.data.decode.audio_samples
    out = [f.to_ndarray().reshape(-1) for f in resampler.resample(frame) + resampler.resample(None)]
    return np.concatenate(out).astype(np.float32) if out else np.zeros(0, np.float32)


def _trim_silence(samples: np.ndarray, sample_rate: int, threshold: float = 0.01, margin_s: float = 0.01) -> np.ndarray:
    """Cut leading/trailing samples quieter than threshold * peak (keeping a small margin)."""
    magnitude = np.abs(samples.astype(np.float32))
    peak = float(magnitude.max()) if magnitude.size else 0.0
    if peak <= 0.0:
        return samples[:0]
    loud = np.flatnonzero(magnitude > threshold * peak)
    margin = int(margin_s * sample_rate)
    return samples[max(0, loud[0] - margin) : loud[-1] + 1 + margin]


def make_audio_track(speech: np.ndarray, speech_rate: int, rng: np.random.Generator, *, duration: float, sample_rate: int) -> tuple[np.ndarray, dict[str, Any]]:
    """Place an utterance at a random offset in a clip with random gain and background noise.

    Silence around the utterance is trimmed, it is resampled to ``sample_rate``, cut (with
    a 20 ms fade) if longer than the clip, peak-normalised to a random gain in
    :data:`GAIN_RANGE`, and white noise at a random SNR in :data:`SNR_DB_RANGE` is added.

    Args:
        speech: int16 (or float in [-1, 1]) array of shape ``(n,)`` at ``speech_rate`` Hz.
        speech_rate: rate of ``speech`` in Hz.
        rng: random generator; all randomness comes from it.
        duration: clip length in seconds.
        sample_rate: output rate in Hz.

    Returns:
        ``(audio, meta)``: float32 array of shape ``(round(duration * sample_rate),)`` in
        [-1, 1], and a dict with ``onset_s`` and ``speech_s`` (where the trimmed speech starts
        and how long it lasts, seconds), ``gain`` and ``snr_db``.
    """
    speech = np.asarray(speech)
    if speech.ndim != 1:
        raise ValueError(f"speech must be 1-D, got shape {speech.shape}")
    if speech_rate <= 0 or sample_rate <= 0 or duration <= 0:
        raise ValueError("speech_rate, sample_rate and duration must be positive")
    n = int(round(duration * sample_rate))
    voiced = _resample(_trim_silence(speech, speech_rate), speech_rate, sample_rate)
    if voiced.size > n:
        fade = min(voiced.size, int(0.02 * sample_rate))
        voiced = voiced[:n].copy()
        voiced[n - fade :] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    gain = float(rng.uniform(*GAIN_RANGE))
    snr_db = float(rng.uniform(*SNR_DB_RANGE))
    onset = int(rng.integers(0, n - voiced.size + 1))
    audio = np.zeros(n, dtype=np.float32)
    peak = float(np.abs(voiced).max()) if voiced.size else 0.0
    if peak > 0:
        voiced = voiced / peak * gain
        audio[onset : onset + voiced.size] = voiced
        rms = float(np.sqrt(np.mean(voiced.astype(np.float64) ** 2)))
    else:
        rms = 0.01
    audio += rng.normal(0.0, rms / 10 ** (snr_db / 20), size=n).astype(np.float32)
    audio = np.clip(audio, -1.0, 1.0)
    meta = {"onset_s": round(onset / sample_rate, 4), "speech_s": round(voiced.size / sample_rate, 4), "gain": round(gain, 3), "snr_db": round(snr_db, 1)}
    return audio, meta


# ----------------------------------------------------------------------------- media


def rgb_to_yuv420p(rgb: np.ndarray) -> np.ndarray:
    """One RGB frame to the planar YUV 4:2:0 layout PyAV's ``from_ndarray(..., "yuv420p")`` takes.

    BT.601 limited range (Y in 16..235, chroma in 16..240), chroma averaged over 2x2 blocks.
    Done here in NumPy because, once libx264 is loaded, swscale's RGB->YUV conversion of a
    small frame costs ~4 ms (measured on 32x32 frames; ~0.3 ms before), i.e. most of the
    writing time of a clip.

    Args:
        rgb: uint8 array ``(H, W, 3)``, ``H`` a multiple of 4 and ``W`` even.

    Returns:
        uint8 array ``(H * 3 // 2, W)``: the Y plane, then the U and V planes (each
        ``(H/2, W/2)``) laid out row after row.
    """
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[-1] != 3 or rgb.shape[0] % 4 or rgb.shape[1] % 2:
        raise ValueError(f"rgb must be uint8 (H, W, 3) with H a multiple of 4 and W even, got {rgb.dtype} {rgb.shape}")
    x = rgb.astype(np.float32) / 255.0
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    y = 16.0 + 65.481 * r + 128.553 * g + 24.966 * b
    u = 128.0 - 37.797 * r - 74.203 * g + 112.0 * b
    v = 128.0 + 112.0 * r - 93.786 * g - 18.214 * b
    h, w = y.shape

    def half(c: np.ndarray) -> np.ndarray:  # (H, W) -> (H/2, W/2), mean of each 2x2 block
        return c.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))

    planes = [np.clip(np.rint(p), 0, 255).astype(np.uint8) for p in (y, half(u), half(v))]
    return np.concatenate([planes[0], planes[1].reshape(h // 4, w), planes[2].reshape(h // 4, w)])


def write_clip(path: str | Path, video: np.ndarray, audio: np.ndarray, *, fps: Fraction | int, sample_rate: int) -> None:
    """Write an mp4 with H.264 video and AAC audio (written to a temporary name, then renamed).

    Args:
        path: output file (``.mp4``).
        video: uint8 array of shape ``(T, H, W, 3)``, RGB; H and W must be even.
        audio: float array of shape ``(N,)`` in [-1, 1], mono.
        fps: constant frame rate (frames per second); frame ``i`` has timestamp ``i / fps``.
        sample_rate: audio rate in Hz (an AAC rate, e.g. 16000); audio starts at time 0.

    The video has no B-frames (decode order = display order); AAC adds its usual encoder
    delay (priming, 1024 samples), which the mp4 edit list hides from decoders that honour it.
    """
    import av

    video = np.asarray(video)
    audio = np.asarray(audio, dtype=np.float32)
    if video.dtype != np.uint8 or video.ndim != 4 or video.shape[-1] != 3:
        raise ValueError(f"video must be uint8 of shape (T, H, W, 3), got {video.dtype} {video.shape}")
    if video.shape[1] % 2 or video.shape[2] % 2:
        raise ValueError(f"H.264 yuv420p needs even frame sizes, got {video.shape[1]}x{video.shape[2]}")
    if audio.ndim != 1:
        raise ValueError(f"audio must be 1-D, got shape {audio.shape}")
    path = Path(path)
    tmp = path.with_name(path.stem + ".partial" + path.suffix)
    with av.open(str(tmp), mode="w", format="mp4") as container:
        vstream = container.add_stream("libx264", rate=Fraction(fps))
        vstream.width, vstream.height = int(video.shape[2]), int(video.shape[1])
        vstream.pix_fmt = "yuv420p"
        vstream.options = {"crf": "18", "preset": "veryfast", "x264-params": "bframes=0:threads=1:log-level=none"}
        astream = container.add_stream("aac", rate=int(sample_rate), layout="mono")
        astream.bit_rate = 48000
        astream.options = {"aac_coder": "fast"}  # FFmpeg's default two-loop coder takes ~2x as long per clip
        for i, rgb in enumerate(video):
            if rgb.shape[0] % 4 == 0:
                frame = av.VideoFrame.from_ndarray(rgb_to_yuv420p(rgb), format="yuv420p")
            else:  # the packed planes need H % 4 == 0; let swscale convert other sizes
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24").reformat(format="yuv420p")
            frame.pts = i
            container.mux(vstream.encode(frame))
        container.mux(vstream.encode(None))
        frame = av.AudioFrame.from_ndarray(audio[None, :], format="flt", layout="mono")
        frame.sample_rate = int(sample_rate)
        frame.pts = 0
        container.mux(astream.encode(frame))
        container.mux(astream.encode(None))
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- build


_WORKER_ENGINE: Espeak | None = None


def _init_worker(spec: EspeakSpec) -> None:
    global _WORKER_ENGINE
    _WORKER_ENGINE = open_espeak(spec)


def _make_clip(job: dict[str, Any]) -> dict[str, Any]:
    """Synthesise, render and write one clip; returns its manifest row."""
    engine = _WORKER_ENGINE
    if engine is None:
        raise RuntimeError("worker not initialised with an eSpeak NG back end")
    rng = np.random.default_rng(job["seed"])
    speech = engine.synthesize(job["label"], job["voice"], speed=job["speed"], pitch=job["pitch"])
    audio, audio_meta = make_audio_track(speech, engine.sample_rate, rng, duration=job["duration"], sample_rate=job["sample_rate"])
    video, video_meta = render_digit_video(
        np.asarray(job["image"]), rng, num_frames=job["num_frames"], image_size=job["image_size"], colour_prob=job["colour_prob"]
    )
    write_clip(job["file"], video, audio, fps=job["fps"], sample_rate=job["sample_rate"])
    row = {k: job[k] for k in ("path", "label", "digit", "voice", "accent", "variant", "speed", "pitch", "image_index", "text")}
    row.update(audio_meta)
    row.update(video_meta)
    return row


def _make_chunk(jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Make a fixed group of clips from a freshly reset synthesiser (so that the output does
    not depend on how groups are spread over workers); returns their manifest rows."""
    if _WORKER_ENGINE is None:
        raise RuntimeError("worker not initialised with an eSpeak NG back end")
    _WORKER_ENGINE.reset()
    return [_make_clip(job) for job in jobs]


MANIFEST_COLUMNS = (
    "path", "label", "digit", "voice", "accent", "variant", "speed", "pitch", "image_index",
    "onset_s", "speech_s", "gain", "snr_db", "colour", "size_start_px", "size_end_px", "text",
)


def _check_int(name: str, value: Any, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < low or (high is not None and value > high):
        raise ValueError(f"{name} must be in [{low}, {high if high is not None else 'inf'}], got {value}")
    return int(value)


def _params(num_train, num_test, seed, duration, num_frames, image_size, sample_rate, colour_prob=0.0) -> dict[str, Any]:
    params = {
        "num_train": _check_int("num_train", num_train, 0),
        "num_test": _check_int("num_test", num_test, 0),
        "seed": _check_int("seed", seed, 0),
        "num_frames": _check_int("num_frames", num_frames, 1, 1000),
        "image_size": _check_int("image_size", image_size, 8, 1024),
        "sample_rate": _check_int("sample_rate", sample_rate, 1),
    }
    if params["num_train"] + params["num_test"] == 0:
        raise ValueError("num_train + num_test must be at least 1")
    if params["image_size"] % 2:
        raise ValueError(f"image_size must be even (H.264 yuv420p), got {image_size}")
    if params["sample_rate"] not in _AAC_RATES:
        raise ValueError(f"sample_rate must be one of {_AAC_RATES} (AAC), got {sample_rate}")
    if isinstance(duration, bool) or not isinstance(duration, (int, float, np.floating, np.integer)):
        raise TypeError(f"duration must be a number of seconds, got {type(duration).__name__}")
    if not 0.25 <= float(duration) <= 60.0 or not math.isfinite(float(duration)):
        raise ValueError(f"duration must be in [0.25, 60] seconds, got {duration}")
    params["duration"] = float(duration)
    if isinstance(colour_prob, bool) or not isinstance(colour_prob, (int, float)) or not 0.0 <= float(colour_prob) <= 1.0:
        raise ValueError(f"colour_prob must be a number in [0, 1], got {colour_prob!r}")
    params["colour_prob"] = float(colour_prob)
    return params


def _fps(num_frames: int, duration: float) -> Fraction:
    return (Fraction(num_frames) / Fraction(duration).limit_denominator(1000)).limit_denominator(1000)


def _read_info(root: Path) -> dict[str, Any] | None:
    try:
        return json.loads((root / "info.json").read_text())
    except (OSError, ValueError):
        return None


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(text)
    os.replace(tmp, path)


def _plan_split(split: str, count: int, rng: np.random.Generator, images: np.ndarray, labels: np.ndarray, image_pool: np.ndarray, accents: list[str], variants: list[str], params: dict[str, Any], root: Path) -> list[dict[str, Any]]:
    """Draw the per-clip parameters of one split (in the parent, so results do not depend on workers)."""
    digits = np.arange(count) % len(DIGIT_WORDS)
    rng.shuffle(digits)
    pools = {d: image_pool[labels[image_pool] == d] for d in range(len(DIGIT_WORDS))}
    jobs = []
    for i, digit in enumerate(digits.tolist()):
        accent = accents[int(rng.integers(len(accents)))]
        variant = variants[int(rng.integers(len(variants)))]
        image_index = int(rng.choice(pools[digit]))
        rel = f"media/{split}/{split}_{i:05d}.mp4"
        jobs.append({
            "path": rel,
            "file": str(root / rel),
            "label": DIGIT_WORDS[digit],
            "digit": digit,
            "text": caption(split, i, digit),
            "voice": f"{accent}+{variant}" if variant else accent,
            "accent": accent,
            "variant": variant,
            "speed": int(rng.integers(SPEED_RANGE[0], SPEED_RANGE[1] + 1)),
            "pitch": int(rng.integers(PITCH_RANGE[0], PITCH_RANGE[1] + 1)),
            "image_index": image_index,
            "image": (images[image_index] / 16.0).astype(np.float32),
            "seed": int(rng.integers(2**63 - 1)),
            "duration": params["duration"],
            "num_frames": params["num_frames"],
            "colour_prob": params["colour_prob"],
            "image_size": params["image_size"],
            "sample_rate": params["sample_rate"],
            "fps": _fps(params["num_frames"], params["duration"]),
        })
    return jobs


def build_avdigits(
    root: str | Path,
    *,
    num_train: int,
    num_test: int,
    seed: int = 0,
    duration: float = 1.0,
    num_frames: int = 8,
    image_size: int = 32,
    sample_rate: int = 16000,
    colour_prob: float = 0.0,
    workers: int | None = None,
    espeak_backend: str = "auto",
) -> dict[str, Any]:
    """Build the AV-digits data set under ``root`` once; later calls reuse it.

    Args:
        root: output folder (created). The build owns ``root/media/``, ``root/train.csv``,
            ``root/test.csv`` and ``root/info.json``; other files there are left alone.
        num_train: number of training clips (classes balanced to within one clip).
        num_test: number of test clips (same).
        seed: random seed; the data set is a function of the parameters and the eSpeak NG
            version only (not of ``workers``).
        duration: clip length in seconds (0.25..60).
        num_frames: video frames per clip; the frame rate is ``num_frames / duration``.
        image_size: video frame height and width in pixels (even).
        sample_rate: audio rate in Hz (an AAC rate such as 16000).
        colour_prob: fraction of clips drawn in random colours instead of grey (a harder
            video task; see :func:`render_digit_video`).
        workers: processes used to make clips; ``None`` = ``min(os.cpu_count(), 8)``. Small
            builds (< 64 clips) run in this process. Workers are *spawned*: a script that
            calls this with several workers must do so under ``if __name__ == "__main__":``.
        espeak_backend: ``"auto"``, ``"library"`` or ``"cli"``, see :func:`zorro.demo.speech.find_espeak`.

    Returns:
        The content of ``root/info.json``: ``version``, ``params`` (the arguments above but
        ``workers``/``espeak_backend``), ``counts`` (clips per split and per class), ``classes``,
        ``voices`` (accents/variants per split), ``images`` (``load_digits`` indices per split),
        ``espeak`` (back end and version), ``media`` (formats), ``manifests`` and ``build_seconds``.
        If ``info.json`` already matches ``params`` and ``version``, it is returned without building.

    Raises:
        TypeError, ValueError: bad arguments.
        zorro.demo.speech.EspeakNotFoundError: eSpeak NG is missing; the message says how to install it.
    """
    params = _params(num_train, num_test, seed, duration, num_frames, image_size, sample_rate, colour_prob)
    if workers is not None:
        workers = _check_int("workers", workers, 1, 256)
    root = Path(root)
    info = _read_info(root)
    if (
        info is not None
        and info.get("version") == AVDIGITS_VERSION
        and info.get("params") == params
        and all((root / f"{s}.csv").is_file() for s in ("train", "test"))
    ):
        logger.info("AV-digits already built in %s", root)
        return info

    engine = find_espeak(espeak_backend)  # fail early, before touching anything
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("AV-digits needs scikit-learn: pip install 'zorro[demo]'") from exc

    started = time.perf_counter()
    root.mkdir(parents=True, exist_ok=True)
    (root / "info.json").unlink(missing_ok=True)  # the build is invalid until info.json is rewritten
    for name in ("train.csv", "test.csv"):
        (root / name).unlink(missing_ok=True)
    shutil.rmtree(root / "media", ignore_errors=True)
    for split in ("train", "test"):
        (root / "media" / split).mkdir(parents=True)

    digits = load_digits()
    images, labels = np.asarray(digits.images), np.asarray(digits.target)
    train_images, test_images = split_images(labels, params["seed"])
    available = set(engine.voice_names())
    variants = [v for v in VARIANTS if not v or not available or v in available]
    train_variants, test_variants = split_variants(variants)
    train_accents = [a for a in ACCENTS if a not in TEST_ACCENTS]
    test_accents = list(TEST_ACCENTS)

    rng = np.random.default_rng([params["seed"], 2])
    plan = {
        "train": _plan_split("train", params["num_train"], rng, images, labels, train_images, train_accents, train_variants, params, root),
        "test": _plan_split("test", params["num_test"], rng, images, labels, test_images, test_accents, test_variants, params, root),
    }
    jobs = plan["train"] + plan["test"]
    if workers is None:
        workers = max(1, min(os.cpu_count() or 1, 8))
    workers = min(workers, max(1, len(jobs)))
    logger.info("building AV-digits in %s: %d train + %d test clips, %d worker(s), eSpeak NG %s (%s %s)",
                root, params["num_train"], params["num_test"], workers, engine.version, engine.spec.source, engine.spec.backend)

    rows: list[dict[str, Any]] = []
    chunks = [jobs[i : i + _CHUNK] for i in range(0, len(jobs), _CHUNK)]
    report_every = max(1, len(chunks) // 10)
    if workers == 1 or len(jobs) < _PARALLEL_MIN_CLIPS:
        _init_worker(engine.spec)
        results = map(_make_chunk, chunks)
        pool = None
    else:
        # spawn: safe whatever threads (torch, BLAS) the calling process runs.
        pool = multiprocessing.get_context("spawn").Pool(workers, initializer=_init_worker, initargs=(engine.spec,))
        results = pool.imap(_make_chunk, chunks)
    try:
        for done, chunk_rows in enumerate(results, 1):
            rows.extend(chunk_rows)
            if done % report_every == 0:
                logger.info("AV-digits: %d/%d clips", len(rows), len(jobs))
    finally:
        if pool is not None:
            pool.close()
            pool.join()

    by_split = {"train": rows[: params["num_train"]], "test": rows[params["num_train"] :]}
    for split, split_rows in by_split.items():
        tmp = root / f"{split}.csv.partial"
        with open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=MANIFEST_COLUMNS)
            writer.writeheader()
            writer.writerows(split_rows)
        os.replace(tmp, root / f"{split}.csv")

    fps = _fps(params["num_frames"], params["duration"])
    info = {
        "name": "AV-digits",
        "version": AVDIGITS_VERSION,
        "params": params,
        "classes": list(DIGIT_WORDS),
        "counts": {
            split: {"clips": len(r), "per_class": {w: sum(x["label"] == w for x in r) for w in DIGIT_WORDS}}
            for split, r in by_split.items()
        },
        "voices": {
            "train": {"accents": train_accents, "variants": train_variants},
            "test": {"accents": test_accents, "variants": test_variants},
        },
        "images": {
            "source": "sklearn.datasets.load_digits",
            "train": train_images.tolist(),
            "test": test_images.tolist(),
        },
        "espeak": {"backend": engine.spec.backend, "source": engine.spec.source, "version": engine.version},
        "media": {
            "container": "mp4",
            "video": {"codec": "h264", "pix_fmt": "yuv420p", "width": params["image_size"], "height": params["image_size"],
                      "fps": f"{fps.numerator}/{fps.denominator}", "frames": params["num_frames"]},
            "audio": {"codec": "aac", "channels": 1, "sample_rate": params["sample_rate"],
                      "samples": int(round(params["duration"] * params["sample_rate"]))},
        },
        "manifests": {"train": "train.csv", "test": "test.csv", "paths": "relative to the manifest's folder"},
        "build_seconds": round(time.perf_counter() - started, 2),
    }
    _write_text_atomic(root / "info.json", json.dumps(info, indent=1))
    logger.info("AV-digits built in %.1f s", info["build_seconds"])
    return info


def load_manifest(root: str | Path, split: str) -> list[dict[str, Any]]:
    """Read ``root/{split}.csv`` of a built data set.

    Args:
        root: the folder given to :func:`build_avdigits`.
        split: ``"train"`` or ``"test"``.

    Returns:
        One dict per clip with the manifest's columns as strings, plus ``file``: the absolute
        path of the clip, and ``digit`` as an int (0..9).
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    root = Path(root)
    manifest = root / f"{split}.csv"
    if not manifest.is_file():
        raise FileNotFoundError(f"{manifest} not found; build it with build_avdigits({str(root)!r}, ...)")
    with open(manifest, newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        row["file"] = str((root / row["path"]).resolve())
        row["digit"] = int(row["digit"])
    return rows
