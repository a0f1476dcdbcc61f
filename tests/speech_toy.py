"""A tiny "your own audio" dataset for tests: short 8 kHz mono WAV files in a
folder-per-class tree, written with PyAV and numpy (nothing is downloaded).

Each class is a voiced sound with its own pitch and formant-like resonances, spoken at a
random pitch (+-8 %), level and length (0.3-1.0 s by default), with a fade in and out and a
little noise, like short recordings of single words.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

CLASSES = ("low", "mid", "high")
_PITCH = {"low": 110.0, "mid": 180.0, "high": 290.0}  # Hz
_FORMANTS = {"low": (500.0, 1500.0), "mid": (700.0, 1200.0), "high": (350.0, 2300.0)}  # Hz


def write_wav(path: str | Path, samples: np.ndarray, sample_rate: int) -> Path:
    """Write mono float samples in [-1, 1] as a 16-bit PCM WAV file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w", format="wav") as out:
        stream = out.add_stream("pcm_s16le", rate=sample_rate, layout="mono")
        pcm = np.clip(samples * 32767.0, -32768, 32767).astype(np.int16)[None, :]
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate = sample_rate
        frame.pts = 0
        frame.time_base = Fraction(1, sample_rate)
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def utterance(label: str, seconds: float, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """One synthetic utterance of class ``label``: ``round(seconds * sample_rate)`` float32 samples."""
    n = int(round(seconds * sample_rate))
    t = np.arange(n) / sample_rate
    f0 = _PITCH[label] * rng.uniform(0.92, 1.08)
    signal = np.zeros(n)
    for k in range(1, 12):
        freq = k * f0
        if freq >= sample_rate / 2:
            break
        gain = sum(np.exp(-((freq - f) / 150.0) ** 2) for f in _FORMANTS[label]) + 0.05
        signal += gain * np.sin(2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi)) / k
    fade = np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.03)
    signal = signal * fade / (np.abs(signal).max() + 1e-9) * rng.uniform(0.2, 0.6)
    return (signal + 0.003 * rng.standard_normal(n)).astype(np.float32)


def make_speech_dataset(root: str | Path, *, per_class: int = 6, splits: tuple[str, ...] = ("train", "test"), sample_rate: int = 8000,
                        seconds: tuple[float, float] = (0.3, 1.0), seed: int = 0) -> dict[str, list[tuple[Path, str, float]]]:
    """Write ``root/<split>/<class>/<k>.wav`` for every split and class; returns, per split,
    ``(path, label, seconds)`` of each file."""
    rng = np.random.default_rng(seed)
    written: dict[str, list[tuple[Path, str, float]]] = {}
    for split in splits:
        for label in CLASSES:
            for k in range(per_class):
                secs = float(rng.uniform(*seconds))
                path = write_wav(Path(root) / split / label / f"{k:03d}.wav", utterance(label, secs, sample_rate, rng), sample_rate)
                written.setdefault(split, []).append((path, label, secs))
    return written
