"""``ZorroConfig``: every constructor option of :class:`zorro.Zorro`, validated.

It sits below both the model (:mod:`zorro.model` builds a network from it) and the
pretrained-folder format (:mod:`zorro.hub` reads and writes it as ``config.json``), so
neither of those has to import the other's way round: ``zorro.model -> zorro.hub ->
zorro.model_config``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping, Sequence

from zorro.layers.attention import check_backend
from zorro.masks import FUSION, GLOBAL, check_mask_rule
from zorro.modalities import AUDIO_OPTIONS, VIDEO_OPTIONS, check_spec
from zorro.tokens import TokenTypes

__all__ = ["ZorroConfig", "SEED_RETURN_TOKEN_TYPES", "POS_EMBED_KINDS", "audio_sample_rate", "return_token_name"]

SEED_RETURN_TOKEN_TYPES = (TokenTypes.AUDIO, TokenTypes.VIDEO, TokenTypes.FUSION)
POS_EMBED_KINDS = ("sincos", "none")


def _pair(x: int | Sequence[int], name: str) -> tuple[int, int]:
    if isinstance(x, int) and not isinstance(x, bool):
        return (x, x)
    if isinstance(x, (tuple, list)) and len(x) == 2 and all(isinstance(v, int) for v in x):
        return (int(x[0]), int(x[1]))
    raise TypeError(f"{name} must be an int or a pair of ints, got {x!r}")


def _token_type(x: TokenTypes | str | int) -> TokenTypes | str:
    """A return token as given -> a ``TokenTypes`` (the seed's four, by member, name in any
    case, or int value) or the lower-case name of another modality."""
    if isinstance(x, TokenTypes):
        return x
    if isinstance(x, str) and x.upper() in TokenTypes.__members__:
        return TokenTypes[x.upper()]
    if isinstance(x, int) and not isinstance(x, bool) and x in {t.value for t in TokenTypes}:
        return TokenTypes(x)
    if isinstance(x, str) and x.isidentifier():
        return x.lower()
    raise ValueError(f"unknown return token type {x!r}; expected a modality name or one of {[t.name for t in TokenTypes]}")


def audio_sample_rate(options: Mapping[str, Any]) -> int | None:
    """The rate (Hz) a model's audio is expected at, from its constructor options (a config's
    ``to_dict()`` or a training config's ``model.arch``): that of the ``audio`` modality (or
    the first modality of kind ``audio``) of ``modalities``, else the flat ``sample_rate``
    (16 kHz by default); None for a model whose table has no audio."""
    table = options.get("modalities")
    if not table:
        return int(options.get("sample_rate") or AUDIO_OPTIONS["sample_rate"])
    audio = table.get("audio") if isinstance(table.get("audio"), Mapping) and table["audio"].get("kind") == "audio" else None
    audio = audio or next((spec for spec in table.values() if isinstance(spec, Mapping) and spec.get("kind") == "audio"), None)
    return None if audio is None else int(audio.get("sample_rate", AUDIO_OPTIONS["sample_rate"]))


def return_token_name(token: TokenTypes | str) -> str:
    """The output name of a return token: ``TokenTypes.AUDIO`` -> ``"audio"``, a modality name as is."""
    return token.name.lower() if isinstance(token, TokenTypes) else token


@dataclass
class ZorroConfig:
    """Every constructor option of :class:`Zorro`. The first block are the seed's arguments
    with the seed's defaults; the second block are this library's additions."""

    dim: int  # model width D
    depth: int  # number of transformer layers
    dim_head: int = 64  # width of one attention head
    heads: int = 8  # attention heads
    ff_mult: float = 4  # GEGLU hidden width = int(dim * ff_mult * 2 / 3)
    num_fusion_tokens: int = 16  # learned fusion tokens, shared across the batch
    audio_patch_size: int | tuple[int, int] = 16  # (freq, time) patch of the audio features
    video_patch_size: int | tuple[int, int] = 16  # (h, w) of a video tubelet
    video_temporal_patch_size: int = 2  # frames per video tubelet
    video_channels: int = 3  # colour channels of the video
    spec_n_fft: int = 128  # spectrogram front-end: FFT size (samples)
    spec_power: float = 2  # spectrogram front-end: |STFT| ** power
    spec_win_length: int = 24  # spectrogram front-end: Hann window length (samples)
    spec_hop_length: int | None = None  # spectrogram front-end: hop (samples), default win // 2
    spec_pad: int = 0  # spectrogram front-end: zero padding on both sides (samples)
    spec_center: bool = True  # spectrogram front-end: centre frames (pad n_fft // 2)
    spec_pad_mode: str = "reflect"  # spectrogram front-end: padding mode when centring
    spec_aug_stretch_factor: float = 0.8  # SpecAugment time stretch (1.0 = off), training only
    spec_aug_freq_mask: int = 80  # SpecAugment max frequency-mask width (bins, 0 = off)
    spec_aug_time_mask: int = 80  # SpecAugment max time-mask width (frames, 0 = off)
    # one output per entry: TokenTypes or modality names (default: the seed's AUDIO, VIDEO,
    # FUSION; with `modalities`, one per modality, then FUSION)
    return_token_types: tuple[TokenTypes | str, ...] | None = None

    audio_frontend: str = "fbank"  # "fbank" (Kaldi log-mel) or "spectrogram" (the seed's)
    sample_rate: int = 16000  # expected audio sample rate (Hz)
    fbank_num_mel_bins: int = 128  # fbank front-end: mel bins
    fbank_frame_length: float = 25.0  # fbank front-end: window (ms)
    fbank_frame_shift: float = 10.0  # fbank front-end: hop (ms)
    audio_mean: float | None = None  # feature normalisation mean (None = off)
    audio_std: float | None = None  # feature normalisation std (None = off)
    pos_embed: str = "sincos"  # "sincos" (fixed, any input size) or "none" (the seed)
    attn_backend: str = "sdpa"  # "sdpa" (block-sparse), "eager" (dense reference) or "flex"
    mask_rule: str = "zorro"  # self-attention rule: "zorro", "full" or "bottleneck" (zorro.masks)
    # name -> {"kind": ..., **options} in sequence order (zorro.modalities); None: audio + video
    # from the flat audio_*/fbank_*/spec_*/video_* fields above
    modalities: dict[str, dict[str, Any]] | None = None

    def __post_init__(self) -> None:
        if self.modalities is not None:
            self._check_modalities()
        if self.return_token_types is None:
            self.return_token_types = (
                SEED_RETURN_TOKEN_TYPES if self.modalities is None
                else (*self.modalities, TokenTypes.FUSION if self.num_fusion_tokens else TokenTypes.GLOBAL)
            )
        if isinstance(self.return_token_types, (str, TokenTypes)):
            raise TypeError(f"return_token_types must be a sequence of return tokens, got {self.return_token_types!r}")
        self.return_token_types = tuple(_token_type(t) for t in self.return_token_types)
        if isinstance(self.audio_patch_size, list):
            self.audio_patch_size = tuple(self.audio_patch_size)
        if isinstance(self.video_patch_size, list):
            self.video_patch_size = tuple(self.video_patch_size)
        for name in ("dim", "depth", "dim_head", "heads", "video_temporal_patch_size", "video_channels"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if not isinstance(self.num_fusion_tokens, int) or self.num_fusion_tokens < 0:
            raise ValueError(f"num_fusion_tokens must be an int >= 0, got {self.num_fusion_tokens!r}")
        if not self.return_token_types:
            raise ValueError("return_token_types must name at least one return token")
        if TokenTypes.FUSION in self.return_token_types and self.num_fusion_tokens == 0:
            raise ValueError("a FUSION return token needs num_fusion_tokens >= 1")
        names = self.modality_names
        for token in self.return_token_types:
            name = return_token_name(token)
            if name not in names and name not in (FUSION, GLOBAL):
                raise ValueError(f"return token {name!r} names no modality of this model; its modalities are {list(names)}, "
                                 f"and 'fusion' and 'global' pool the fusion tokens and every token")
        if self.pos_embed not in POS_EMBED_KINDS:
            raise ValueError(f"pos_embed must be one of {POS_EMBED_KINDS}, got {self.pos_embed!r}")
        check_backend(self.attn_backend)
        check_mask_rule(self.mask_rule)
        _pair(self.audio_patch_size, "audio_patch_size")
        _pair(self.video_patch_size, "video_patch_size")

    def _check_modalities(self) -> None:
        if not isinstance(self.modalities, Mapping) or not self.modalities:
            raise ValueError(f"modalities must be a non-empty mapping of name -> spec, got {self.modalities!r}")
        changed = [f.name for f in fields(self) if f.name in AUDIO_OPTIONS or f.name in VIDEO_OPTIONS
                   if getattr(self, f.name) != f.default]
        if changed:
            raise ValueError(
                f"{changed} are settings of the default audio and video modalities; with `modalities` given, set them "
                f"in the spec of the modality they belong to, e.g. modalities={{'audio': {{'kind': 'audio', "
                f"'{changed[0]}': ...}}}}"
            )
        self.modalities = {name: check_spec(name, spec) for name, spec in self.modalities.items()}

    @property
    def modality_names(self) -> tuple[str, ...]:
        """The modalities' names, in sequence order (``("audio", "video")`` by default)."""
        return ("audio", "video") if self.modalities is None else tuple(self.modalities)

    def modality_specs(self) -> dict[str, dict[str, Any]]:
        """``name -> {"kind": ..., **options}`` for every modality: ``modalities`` when given,
        else audio and video specs built from the flat fields."""
        if self.modalities is not None:
            return {name: dict(spec) for name, spec in self.modalities.items()}
        audio = {k: (list(v) if isinstance(v, tuple) else v) for k, v in ((k, getattr(self, k)) for k in AUDIO_OPTIONS)}
        video = {k: (list(v) if isinstance(v, tuple) else v) for k, v in ((k, getattr(self, k)) for k in VIDEO_OPTIONS)}
        return {"audio": {"kind": "audio", **audio}, "video": {"kind": "video", **video}}

    @property
    def audio_sample_rate(self) -> int | None:
        """The rate (Hz) the model's audio is expected at (see :func:`audio_sample_rate`)."""
        return audio_sample_rate(self.to_dict())

    @property
    def return_token_names(self) -> tuple[str, ...]:
        """Output name of every return token (``"audio"``, ``"fusion"``, ``"text"``, ...)."""
        return tuple(return_token_name(t) for t in self.return_token_types)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (token types by name, tuples as lists). ``modalities`` is written
        only when it is set, so a default audio-video config reads as before; when it is set,
        the flat audio and video settings (unused, at their defaults) are left out."""
        out = asdict(self)
        out["return_token_types"] = [t.name if isinstance(t, TokenTypes) else t for t in self.return_token_types]
        if self.modalities is None:
            del out["modalities"]
        else:  # the flat audio/video settings are unused (and at their defaults) with a table
            for key in (*AUDIO_OPTIONS, *VIDEO_OPTIONS):
                out.pop(key, None)
        for key, value in out.items():
            if isinstance(value, tuple):
                out[key] = list(value)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ZorroConfig":
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown Zorro config keys {unknown}; known keys are {sorted(known)}")
        return cls(**dict(data))
