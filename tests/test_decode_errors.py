"""Which decoder errors mean "damaged file" (zorro.data.decode.errors), and the escapes the
fuzz campaign found, each reproduced with a stand-in that raises what PyAV raised."""

from __future__ import annotations

import inspect
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import media  # noqa: E402

from zorro.data import DecodeError, MediaReader, read_clip  # noqa: E402
from zorro.data.decode import audio_samples, video_window  # noqa: E402
from zorro.data.decode.errors import decode_errors, decoder_failure  # noqa: E402

KW = dict(duration=1.0, num_frames=4, image_size=16)
AV_ERRORS = [
    c for _, c in inspect.getmembers(av.error, inspect.isclass)
    if issubclass(c, av.error.FFmpegError) and c is not av.error.PyAVCallbackError
]


def _make(cls):
    return cls(1, "stand-in message")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("errors")
    return {
        "mp4": media.make_media(d / "a.mp4"),
        "wav": media.make_media(d / "a.wav", video_codec=None, audio_codec="pcm_s16le", layout="mono"),
    }


@pytest.mark.parametrize("cls", AV_ERRORS, ids=lambda c: c.__name__)
def test_every_pyav_error_family_maps_to_a_reason(cls):
    exc = _make(cls)
    reason = decoder_failure(exc)
    assert reason is not None and cls.__name__ in reason and "stand-in message" in reason
    with pytest.raises(DecodeError, match=r"'f\.mp4': reading the header: ") as info:
        with decode_errors("f.mp4", "reading the header"):
            raise exc
    assert info.value.path == "f.mp4" and info.value.__cause__ is exc


@pytest.mark.parametrize(
    "cls, family",
    [
        (av.error.MemoryError, "allocate memory"),
        (av.error.PermissionError, "refused"),
        (av.error.EOFError, "ended early"),
        (av.error.InvalidDataError, "invalid data"),
        (av.error.DecoderNotFoundError, "no decoder"),
        (av.error.OSError, "I/O or unsupported"),
        (av.error.PatchWelcomeError, "FFmpeg error"),
    ],
)
def test_family_named_by_the_builtin_base(cls, family):
    assert family in decoder_failure(_make(cls))


@pytest.mark.parametrize(
    "exc",
    [
        AttributeError("'NoneType' object has no attribute 'width'"),
        ValueError("duration must be positive"),  # our own argument checks
        TypeError("bad call"),
        MemoryError(),  # Python's own, not FFmpeg's
        PermissionError(1, "not ours"),
        av.error.PyAVCallbackError(1, "a Python callback raised inside FFmpeg"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_errors_of_ours_are_not_mapped_and_propagate(exc):
    assert decoder_failure(exc) is None
    with pytest.raises(type(exc)) as info:
        with decode_errors("f.mp4", "decoding"):
            raise exc
    assert info.value is exc


class _Proxy:
    """Forward every attribute to ``obj`` except the ``overrides``."""

    def __init__(self, obj, **overrides):
        self._obj = obj
        self.__dict__.update(overrides)

    def __getattr__(self, name):
        return getattr(self._obj, name)


def test_seek_refused_twice_is_a_decode_error(files):
    # seen: av.error.PermissionError from the seek(0) of the unseekable-stream fallback
    def refuse(*a, **k):
        raise av.error.PermissionError(1, "Operation not permitted")

    with MediaReader(files["mp4"]) as r:
        real = r._container
        r._container = _Proxy(real, seek=refuse)
        with pytest.raises(DecodeError, match="cannot seek to .* nor to the start: FFmpeg refused") as info:
            r.read(**KW)
        assert info.value.path == str(files["mp4"])
        r._container = real


def _failing_demux(container, after: int):
    def demux(*a, **k):
        for i, packet in enumerate(container.demux(*a, **k)):
            if i == after:
                raise av.error.MemoryError(12, "Cannot allocate memory")
            yield packet

    return demux


def test_demux_error_mid_stream_is_a_counted_skip(files):
    # seen: av.error.MemoryError from container.demux in the audio path (outside the guarded decode)
    with MediaReader(files["wav"]) as r:
        whole = r.read(**KW)
        real = r._container
        r._container = _Proxy(real, demux=_failing_demux(real, after=3))
        clip = r.read(**KW)
        r._container = real
    assert whole.skipped_packets == 0 and not whole.padded
    assert clip.has_audio and clip.skipped_packets == 1
    assert clip.padded and 0 < clip.audio_valid_samples < whole.audio_valid_samples


def test_demux_error_before_any_packet_is_a_decode_error(files):
    with MediaReader(files["wav"]) as r:
        real = r._container
        r._container = _Proxy(real, demux=_failing_demux(real, after=0))
        with pytest.raises(DecodeError, match=r"nothing decodable .*skipped 1 damaged"):
            r.read(**KW)
        r._container = real


def test_stream_without_codec_context_is_passed_over(files, monkeypatch):
    # seen: AttributeError 'NoneType' has no attribute 'thread_count' / 'width' / 'sample_rate'
    real_open = av.open

    def open_without(kind):
        def fake_open(path, *a, **k):
            c = real_open(path, *a, **k)
            streams = c.streams
            broken = [_Proxy(s, codec_context=None) for s in getattr(streams, kind)]
            return _Proxy(c, streams=_Proxy(streams, **{kind: broken}))

        return fake_open

    monkeypatch.setattr(av, "open", open_without("video"))
    clip = read_clip(files["mp4"], **KW)  # the audio still decodes
    assert clip.has_audio and not clip.has_video
    monkeypatch.setattr(av, "open", open_without("audio"))
    with pytest.raises(DecodeError, match=r"no decodable audio or video stream \(audio stream #0 has no decoder"):
        read_clip(files["wav"], **KW)


def test_frame_conversion_refused_is_a_decode_error(files, monkeypatch):
    # seen: av.error.OSError (EOPNOTSUPP) from swscale on a damaged MPEG-PS header
    def refuse(*a, **k):
        raise av.error.OSError(95, "Operation not supported")

    monkeypatch.setattr(video_window, "_frame_to_rgb", refuse)
    with pytest.raises(DecodeError, match=r"decoding video in \[0\.000, 1\.000\) s: FFmpeg reported an I/O"):
        read_clip(files["mp4"], start=0.0, **KW)
    assert read_clip(files["mp4"], video=False, **KW).has_audio  # audio alone is unaffected


def test_bug_of_ours_inside_decoding_still_surfaces(files, monkeypatch):
    def bug(*a, **k):
        raise AttributeError("a bug of ours")

    monkeypatch.setattr(video_window, "_frame_to_rgb", bug)
    with pytest.raises(AttributeError, match="a bug of ours"):
        read_clip(files["mp4"], **KW)


@pytest.mark.parametrize("fmt", ["u8", "u8p", "s16", "s16p", "s32", "s32p", "s64", "s64p", "flt", "fltp", "dbl", "dblp"])
def test_every_sample_format_converts(fmt):
    # seen: ValueError "Conversion from 's64' format to numpy array is not supported" (a damaged
    # WAV header selecting 64-bit PCM)
    want = np.array([[0.0, 0.5, -0.5, 0.25], [-1.0, 0.125, 0.75, 0.0]])
    frame = av.AudioFrame(format=fmt, layout="stereo", samples=4)
    frame.sample_rate, frame.pts, frame.time_base = 8000, 0, Fraction(1, 8000)
    spec = audio_samples._SAMPLE_FORMATS[fmt.rstrip("p")]
    dtype, offset, scale = spec
    ints = want / scale + offset
    raw = np.round(ints).clip(np.iinfo(dtype).min, np.iinfo(dtype).max) if np.issubdtype(dtype, np.integer) else ints
    raw = raw.astype(dtype)
    if fmt.endswith("p"):
        for c in range(2):
            np.frombuffer(frame.planes[c], dtype=dtype, count=4)[:] = raw[c]
    else:
        np.frombuffer(frame.planes[0], dtype=dtype, count=8)[:] = raw.T.reshape(-1)
    got = audio_samples._audio_to_planar_float(frame)
    assert got.dtype == np.float32 and got.shape == (2, 4)
    np.testing.assert_allclose(got, want, atol=1.0 / 120)
    chans = audio_samples._audio_channels(frame, 2)
    np.testing.assert_allclose(np.stack(chans), want, atol=1.0 / 120)


def test_implausible_sample_rate_is_refused_quickly(files, tmp_path):
    # seen: a damaged WAV header claiming 10.7 MHz took 2-3 s and ~1 GB to decode and resample
    data = bytearray(files["wav"].read_bytes())
    assert data[12:16] == b"fmt " and int.from_bytes(data[24:28], "little") == 22050
    data[24:28] = (10_704_418).to_bytes(4, "little")
    bad = tmp_path / "fast.wav"
    bad.write_bytes(bytes(data))
    with pytest.raises(DecodeError, match=r"audio stream #0 claims 10704418 Hz, more than 768000"):
        read_clip(bad, **KW)
