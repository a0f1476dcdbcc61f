"""Generate tests/fixtures/audio_reference.npz: torchaudio reference values for zorro.audio.

Run once, by hand, with torchaudio importable. torchaudio is *not* a dependency of the project;
use a throwaway environment outside the repository, e.g. (the compiled extension is not needed:
``torchaudio.compliance.kaldi.fbank`` and ``torchaudio.transforms.Spectrogram`` are pure Python
over torch, and torchaudio 2.11 loads its extension lazily, so deleting ``lib/*.so`` is enough)::

    python -m pip download --no-deps torchaudio==2.11.0 -d /tmp/ta-dl
    mkdir -p /tmp/ta && cd /tmp/ta && unzip -q /tmp/ta-dl/torchaudio-*.whl && rm torchaudio/lib/*.so
    PYTHONPATH=/tmp/ta .venv/bin/python scripts/make_audio_fixture.py

(any environment with ``torch`` and a matching ``torchaudio`` works the same way).

The file holds, for every case, the input waveform (float32), the reference output and the
keyword arguments used, so the tests do not depend on any random number generator.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

try:
    import torchaudio
    from torchaudio.compliance import kaldi
    from torchaudio.transforms import Spectrogram
except ImportError as exc:  # pragma: no cover - tool script
    raise SystemExit(f"this script needs torchaudio (see the module docstring): {exc}") from exc

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "audio_reference.npz"

# The options of issue 4 (AST / CAV-MAE / ImageBind / MBT).
KALDI_FIXED = dict(htk_compat=True, use_energy=False, dither=0.0)


def chirp(num_samples: int, sample_rate: int, f0: float, f1: float, amplitude: float = 0.5) -> np.ndarray:
    """Linear sweep from f0 to f1 Hz over the clip."""
    t = np.arange(num_samples, dtype=np.float64) / sample_rate
    duration = num_samples / sample_rate
    phase = 2 * np.pi * (f0 * t + 0.5 * (f1 - f0) / duration * t**2)
    return (amplitude * np.sin(phase)).astype(np.float32)


def noise(num_samples: int, seed: int, scale: float = 0.1) -> np.ndarray:
    """Gaussian noise from numpy's PCG64 with a fixed seed."""
    return (scale * np.random.default_rng(seed).standard_normal(num_samples)).astype(np.float32)


def fbank_cases() -> list[tuple[str, np.ndarray, dict]]:
    silence_tail = np.concatenate([chirp(3000, 16000, 300.0, 3000.0), np.zeros(2000, np.float32)])
    return [
        ("fbank_chirp16k", chirp(9600, 16000, 100.0, 7000.0), dict(sample_rate=16000, num_mel_bins=128)),
        ("fbank_noise16k", noise(8011, seed=0), dict(sample_rate=16000, num_mel_bins=128)),
        ("fbank_silence16k", silence_tail, dict(sample_rate=16000, num_mel_bins=128)),
        ("fbank_short16k", noise(400, seed=1), dict(sample_rate=16000, num_mel_bins=128)),
        ("fbank_chirp8k", chirp(5000, 8000, 50.0, 3900.0), dict(sample_rate=8000, num_mel_bins=128)),
        ("fbank_noise8k", noise(6007, seed=2, scale=0.3), dict(sample_rate=8000, num_mel_bins=40)),
        (
            "fbank_noise16k_povey",
            noise(3000, seed=3),
            dict(sample_rate=16000, num_mel_bins=23, frame_length=20.0, frame_shift=7.5, window_type="povey"),
        ),
    ]


def spectrogram_cases() -> list[tuple[str, np.ndarray, dict]]:
    return [
        ("spec_seed_chirp", chirp(2000, 16000, 100.0, 7000.0), dict(n_fft=128, win_length=24, power=2.0)),
        ("spec_default_noise", noise(8011, seed=4), dict(n_fft=400)),
        (
            "spec_nocenter_noise",
            noise(4000, seed=5),
            dict(n_fft=256, win_length=200, hop_length=100, center=False),
        ),
        (
            "spec_pad_norm_mag",
            noise(1000, seed=6),
            dict(n_fft=128, win_length=24, pad=7, normalized=True, power=1.0, pad_mode="constant"),
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()

    arrays: dict[str, np.ndarray] = {}
    meta: dict[str, dict] = {}
    for name, wave, kwargs in fbank_cases():
        options = dict(kwargs)
        ref = kaldi.fbank(
            torch.from_numpy(wave)[None],  # (1, L): torchaudio wants (channels, samples)
            sample_frequency=options.pop("sample_rate"),
            window_type=options.pop("window_type", "hanning"),
            **options,
            **KALDI_FIXED,
        )  # (T, M)
        arrays[f"{name}__waveform"] = wave
        arrays[f"{name}__expected"] = ref.numpy().astype(np.float32)
        meta[name] = {"function": "fbank", "kwargs": kwargs}
    for name, wave, kwargs in spectrogram_cases():
        ref = Spectrogram(**kwargs)(torch.from_numpy(wave))  # (F, T)
        arrays[f"{name}__waveform"] = wave
        arrays[f"{name}__expected"] = ref.numpy().astype(np.float32)
        meta[name] = {"function": "spectrogram", "kwargs": kwargs}
    meta_all = {
        "cases": meta,
        "torchaudio": torchaudio.__version__,
        "torch": torch.__version__,
        "kaldi_fixed_options": {**KALDI_FIXED, "window_type": "hanning (unless given)"},
    }
    arrays["__meta__"] = np.array(json.dumps(meta_all, sort_keys=True))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **arrays)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KiB, {len(meta)} cases)")


if __name__ == "__main__":
    main()
