"""Speech synthesis with eSpeak NG for the AV-digits demo data set.

Two interchangeable back ends synthesise a word with a given voice, speed and pitch:

* ``"library"``: the ``libespeak-ng`` shared library driven in-process through
  :mod:`ctypes` (synchronous mode, samples collected by a callback). The library
  comes from the ``espeakng-loader`` wheel (``pip install espeakng-loader``, part of
  the ``demo`` extra), which ships ``libespeak-ng.so`` and its data, or else from
  the system (``apt-get install espeak-ng`` installs ``libespeak-ng.so.1``).
* ``"cli"``: the ``espeak-ng`` program on ``PATH`` (one process per utterance,
  WAV on stdout). About five times slower than the library.

:func:`find_espeak` picks the first that works (``backend="auto"``) and raises
:class:`EspeakNotFoundError`, whose message says how to install eSpeak NG, when
none does. Both back ends return 16-bit mono PCM at eSpeak's native rate
(22,050 Hz).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "EspeakNotFoundError",
    "EspeakError",
    "EspeakSpec",
    "Espeak",
    "find_espeak",
    "espeak_available",
    "INSTALL_HINT",
]

logger = logging.getLogger(__name__)

INSTALL_HINT = (
    "eSpeak NG is needed to synthesise the spoken digits. Install either the pip wheel "
    "(`pip install espeakng-loader`, included in `pip install 'zorro[demo]'`) or the "
    "system package (`apt-get install espeak-ng` on Debian/Ubuntu, `brew install espeak-ng` "
    "on macOS, `dnf install espeak-ng` on Fedora)."
)

# Values of the enums in espeak-ng's speak_lib.h.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_PARAM_RATE = 1
_PARAM_PITCH = 3
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_EE_OK = 0

_SPEED_RANGE = (80, 450)  # words per minute accepted by espeak-ng
_PITCH_RANGE = (0, 99)


class EspeakNotFoundError(RuntimeError):
    """No usable eSpeak NG (library or program) was found; the message says how to get one."""


class EspeakError(RuntimeError):
    """eSpeak NG was found but failed (unknown voice, synthesis error)."""


@dataclass(frozen=True)
class EspeakSpec:
    """Where an eSpeak NG back end lives; picklable, so worker processes can reopen it.

    Attributes:
        backend: ``"library"`` or ``"cli"``.
        path: the shared library file (``library``) or the program (``cli``).
        data_path: the ``espeak-ng-data`` directory, or ``None`` for the built-in default.
        source: where it came from (``"espeakng-loader"``, ``"system"``, ``"PATH"``).
    """

    backend: str
    path: str
    data_path: str | None
    source: str


class Espeak:
    """A ready eSpeak NG back end. Create it with :func:`find_espeak`.

    Attributes:
        spec: the :class:`EspeakSpec` it was opened from.
        sample_rate: the rate of the returned samples in Hz (22,050 for eSpeak NG).
        version: eSpeak NG's version string, e.g. ``"1.52.0"``.
    """

    spec: EspeakSpec
    sample_rate: int
    version: str

    def synthesize(self, text: str, voice: str, *, speed: int = 175, pitch: int = 50) -> np.ndarray:
        """Synthesise ``text``.

        Args:
            text: the words to speak (UTF-8 text, non-empty).
            voice: an eSpeak voice name, optionally with a variant, e.g. ``"en-us+f3"``.
            speed: speaking rate in words per minute, 80..450 (eSpeak's default is 175).
            pitch: base pitch, 0..99 (eSpeak's default is 50).

        Returns:
            int16 array of shape ``(num_samples,)`` at :attr:`sample_rate` Hz, including
            the short silences eSpeak puts before and after the speech.

        Raises:
            ValueError: bad ``text``/``speed``/``pitch``.
            EspeakError: unknown voice or a synthesis failure.
        """
        raise NotImplementedError

    def reset(self) -> None:
        """Return to a freshly initialised state, so that the next utterances do not depend
        on earlier ones (eSpeak's synthesiser carries oscillator and noise state across
        utterances). Cheap (a few ms); a no-op for the ``cli`` back end.
        """

    def voice_names(self) -> list[str]:
        """Names of the voice variants in the data directory's ``voices/!v`` folder (sorted).

        Returns an empty list when the data directory is unknown.
        """
        if self.spec.data_path is None:
            return []
        folder = Path(self.spec.data_path) / "voices" / "!v"
        if not folder.is_dir():
            return []
        return sorted(p.name for p in folder.iterdir() if p.is_file())


def _check_args(text: str, voice: str, speed: int, pitch: int) -> None:
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"text must be a non-empty string, got {text!r}")
    if not isinstance(voice, str) or not voice or any(c.isspace() for c in voice):
        raise ValueError(f"voice must be a non-empty name without spaces, got {voice!r}")
    if not _SPEED_RANGE[0] <= int(speed) <= _SPEED_RANGE[1]:
        raise ValueError(f"speed must be in {_SPEED_RANGE} words per minute, got {speed}")
    if not _PITCH_RANGE[0] <= int(pitch) <= _PITCH_RANGE[1]:
        raise ValueError(f"pitch must be in {_PITCH_RANGE}, got {pitch}")


def _seed_libc_rand(seed: int) -> None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None)
        libc.srand(ctypes.c_uint(seed))
    except (OSError, AttributeError) as exc:  # unusual platforms: determinism is best effort
        logger.debug("cannot seed libc rand(): %s", exc)


_SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


class _LibraryEspeak(Espeak):
    """libespeak-ng in this process. The library is global state: one per process."""

    def __init__(self, spec: EspeakSpec):
        self.spec = spec
        self._chunks: list[np.ndarray] = []

        def collect(wav, num_samples, events):  # called by the library during espeak_Synth
            if wav and num_samples > 0:
                self._chunks.append(np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
            return 0

        self._callback = _SynthCallback(collect)  # keep a reference: the library holds a raw pointer
        self._load()

    def _load(self) -> None:
        spec = self.spec
        try:
            lib = ctypes.CDLL(spec.path)
        except OSError as exc:
            raise EspeakNotFoundError(f"cannot load {spec.path}: {exc}. {INSTALL_HINT}") from exc
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
            ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Synchronize.restype = ctypes.c_int
        lib.espeak_Terminate.restype = ctypes.c_int
        lib.espeak_Info.argtypes = [ctypes.c_void_p]
        lib.espeak_Info.restype = ctypes.c_char_p
        data = spec.data_path.encode() if spec.data_path else None
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data, 0)
        if rate <= 0:
            raise EspeakNotFoundError(
                f"libespeak-ng at {spec.path} failed to initialise (data {spec.data_path}). {INSTALL_HINT}"
            )
        lib.espeak_SetSynthCallback(self._callback)
        self._lib = lib
        self.sample_rate = int(rate)
        self.version = (lib.espeak_Info(None) or b"unknown").decode(errors="replace")
        self._voice: str | None = None

    def reset(self) -> None:
        # The synthesiser keeps state between utterances (oscillator phase, noise generator),
        # so an utterance depends slightly on the ones before it. Unloading and reloading the
        # library restores its initial state (where the platform really unloads it).
        lib, self._lib = self._lib, None
        lib.espeak_Terminate()
        try:
            import _ctypes

            if hasattr(_ctypes, "dlclose"):
                _ctypes.dlclose(lib._handle)
            elif hasattr(_ctypes, "FreeLibrary"):  # Windows
                _ctypes.FreeLibrary(lib._handle)
        except OSError as exc:  # still loaded elsewhere: carry on with a re-initialised library
            logger.debug("could not unload %s: %s", self.spec.path, exc)
        self._load()
        # Some voices (klatt, breathy, whisper) draw noise from libc's rand() and, in
        # eSpeak NG >= 1.52, its own generator: give both a fixed start.
        _seed_libc_rand(0)
        if hasattr(self._lib, "espeak_ng_SetRandSeed"):
            self._lib.espeak_ng_SetRandSeed(ctypes.c_long(0))

    def synthesize(self, text, voice, *, speed=175, pitch=50):
        _check_args(text, voice, speed, pitch)
        lib = self._lib
        if voice != self._voice:
            if lib.espeak_SetVoiceByName(voice.encode()) != _EE_OK:
                self._voice = None
                raise EspeakError(f"eSpeak NG has no voice {voice!r}")
            self._voice = voice
        lib.espeak_SetParameter(_PARAM_RATE, int(speed), 0)
        lib.espeak_SetParameter(_PARAM_PITCH, int(pitch), 0)
        encoded = text.encode("utf-8") + b"\0"
        self._chunks = []
        status = lib.espeak_Synth(encoded, len(encoded), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        lib.espeak_Synchronize()
        if status != _EE_OK:
            raise EspeakError(f"espeak_Synth failed with status {status} for {text!r} ({voice})")
        chunks, self._chunks = self._chunks, []
        return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)


def _parse_wav_stream(data: bytes) -> tuple[np.ndarray, int]:
    """16-bit mono PCM and rate from a WAV that eSpeak streamed (its size fields are bogus)."""
    if len(data) < 44 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise EspeakError("espeak-ng did not write a WAV file")
    pos, rate, bits, channels = 12, None, None, None
    while pos + 8 <= len(data):
        chunk, size = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "little")
        if chunk == b"fmt ":
            channels = int.from_bytes(data[pos + 10 : pos + 12], "little")
            rate = int.from_bytes(data[pos + 12 : pos + 16], "little")
            bits = int.from_bytes(data[pos + 22 : pos + 24], "little")
        elif chunk == b"data":
            if rate is None or bits != 16 or channels != 1:
                raise EspeakError(f"unexpected WAV format from espeak-ng: {channels} ch, {bits} bit")
            payload = data[pos + 8 :]
            payload = payload[: len(payload) // 2 * 2]
            return np.frombuffer(payload, dtype="<i2").astype(np.int16), rate
        pos += 8 + size + (size & 1)
    raise EspeakError("espeak-ng WAV has no data chunk")


class _CliEspeak(Espeak):
    """The ``espeak-ng`` program, one process per utterance."""

    def __init__(self, spec: EspeakSpec):
        self.spec = spec
        try:
            out = subprocess.run([spec.path, "--version"], capture_output=True, text=True, timeout=30)
        except OSError as exc:
            raise EspeakNotFoundError(f"cannot run {spec.path}: {exc}. {INSTALL_HINT}") from exc
        match = re.search(r"eSpeak NG text-to-speech:\s*(\S+)", out.stdout)
        self.version = match.group(1) if match else "unknown"
        self.sample_rate = 22050

    def synthesize(self, text, voice, *, speed=175, pitch=50):
        _check_args(text, voice, speed, pitch)
        cmd = [self.spec.path, "-v", voice, "-s", str(int(speed)), "-p", str(int(pitch)), "--stdout", text]
        proc = subprocess.run(cmd, capture_output=True, timeout=60)
        if proc.returncode != 0 or b"RIFF" not in proc.stdout[:4]:
            message = proc.stderr.decode(errors="replace").strip()
            raise EspeakError(f"espeak-ng failed for {text!r} with voice {voice!r}: {message}")
        if proc.stderr.strip():  # espeak-ng warns (and falls back) on unknown voices
            raise EspeakError(f"espeak-ng: {proc.stderr.decode(errors='replace').strip()}")
        samples, rate = _parse_wav_stream(proc.stdout)
        self.sample_rate = rate
        return samples


def _cli_data_path(program: str) -> str | None:
    try:
        out = subprocess.run([program, "--version"], capture_output=True, text=True, timeout=30).stdout
    except OSError:
        return None
    match = re.search(r"Data at:\s*(.+)$", out.strip(), flags=re.MULTILINE)
    return match.group(1).strip() if match else None


def _candidate_specs(backend: str) -> list[EspeakSpec]:
    specs: list[EspeakSpec] = []
    if backend in ("auto", "library"):
        try:
            import espeakng_loader  # type: ignore[import-not-found]

            lib_path, data_path = espeakng_loader.get_library_path(), espeakng_loader.get_data_path()
            if Path(lib_path).exists():
                specs.append(EspeakSpec("library", lib_path, data_path, "espeakng-loader"))
        except Exception as exc:  # not installed, or broken data
            logger.debug("espeakng-loader unavailable: %s", exc)
        system_lib = ctypes.util.find_library("espeak-ng")
        if system_lib:
            program = shutil.which("espeak-ng")
            data = _cli_data_path(program) if program else None
            specs.append(EspeakSpec("library", system_lib, data, "system"))
    if backend in ("auto", "cli"):
        program = shutil.which("espeak-ng")
        if program:
            specs.append(EspeakSpec("cli", program, _cli_data_path(program), "PATH"))
    return specs


_OPENED: dict[EspeakSpec, Espeak] = {}


def open_espeak(spec: EspeakSpec) -> Espeak:
    """Open (once per process, then reuse) the back end described by ``spec``.

    Raises:
        EspeakNotFoundError: it cannot be loaded or run.
        ValueError: ``spec.backend`` is not ``"library"`` or ``"cli"``.
    """
    if spec not in _OPENED:
        if spec.backend == "library":
            _OPENED[spec] = _LibraryEspeak(spec)
        elif spec.backend == "cli":
            _OPENED[spec] = _CliEspeak(spec)
        else:
            raise ValueError(f"unknown eSpeak backend {spec.backend!r}")
    return _OPENED[spec]


def find_espeak(backend: str = "auto") -> Espeak:
    """Find and open eSpeak NG.

    Args:
        backend: ``"auto"`` (library from the ``espeakng-loader`` wheel, then the system
            library, then the ``espeak-ng`` program), ``"library"`` or ``"cli"``.

    Returns:
        An opened :class:`Espeak` (checked by synthesising a short word).

    Raises:
        ValueError: unknown ``backend``.
        EspeakNotFoundError: nothing usable was found; the message says how to install it.
    """
    if backend not in ("auto", "library", "cli"):
        raise ValueError(f"backend must be 'auto', 'library' or 'cli', got {backend!r}")
    errors = []
    for spec in _candidate_specs(backend):
        try:
            engine = open_espeak(spec)
            if engine.synthesize("one", "en").size == 0:
                raise EspeakError("synthesised no samples")
            return engine
        except (EspeakNotFoundError, EspeakError, OSError) as exc:
            errors.append(f"{spec.source} {spec.backend} ({spec.path}): {exc}")
            logger.debug("eSpeak NG candidate failed: %s", errors[-1])
    tried = f" Tried: {'; '.join(errors)}." if errors else ""
    raise EspeakNotFoundError(f"eSpeak NG not found (backend={backend!r}).{tried} {INSTALL_HINT}")


def espeak_available(backend: str = "auto") -> bool:
    """Whether :func:`find_espeak` would succeed with this ``backend``."""
    try:
        find_espeak(backend)
    except EspeakNotFoundError:
        return False
    return True
