"""The modality table: modality kinds by name, and building a modality's tokenizer from its spec.

A Zorro model's modalities are an ordered mapping ``name -> spec`` (``ZorroConfig.modalities``);
a spec is a dict with a ``kind`` and that kind's options, e.g.::

    {"audio": {"kind": "audio", "audio_patch_size": [16, 8]},
     "video": {"kind": "video"},
     "caption": {"kind": "text"},
     "imu": {"kind": "sequence", "input_dim": 6}}

A *kind* is a tokenizer module class: built from ``dim`` (the model width) and the spec's
options, it turns one input into tokens ``(b, n, dim)`` with their positions. Built-in kinds:

=============  ===========================================  ==============================
kind           input                                        options
=============  ===========================================  ==============================
``audio``      waveforms ``(b, samples)``, or front-end     patch size, front-end, rates,
               features ``(b, F, T)`` as ``<name>_features``  normalisation, SpecAugment
``video``      frames ``(b, c, t, h, w)`` (``t=1``: images)  tubelet size, channels
``text``       ids ``(b, L)`` int64, ``<name>_mask``         ``vocab_size``
``sequence``   features ``(b, T, input_dim)``, ``<name>_mask``  ``input_dim`` (required)
=============  ===========================================  ==============================

Your own kind, without touching the library::

    class DepthTokenizer(torch.nn.Module):
        def __init__(self, dim, *, patch=8):            # options come from the spec
            ...
        def forward(self, depth, *, mask=None):         # keyword-only args: extra inputs <name>_mask ...
            return tokens                               # (b, n, dim), or a ModalityTokens

    zorro.register_modality_kind("depth", DepthTokenizer)
    model = Zorro(dim=256, depth=6, modalities={"video": {"kind": "video"}, "depth": {"kind": "depth", "patch": 8}})

The constructor takes ``dim`` and the spec's options as keywords (and ``pos_embed``, the
model's ``"sincos"``/``"none"`` setting, when it has a parameter of that name); the options
must be JSON values, since they are saved in ``config.json``. ``forward`` takes the input as
its one positional argument, and as keyword-only arguments the extra inputs it accepts
(``mask`` receives ``<name>_mask``). A model whose config names a kind that is not registered
fails to build, naming the kind and this function: register the kind before
``Zorro.from_pretrained``.
"""

from __future__ import annotations

import inspect
import json
from typing import Any, Mapping

from torch import nn

from zorro.masks import check_modality_name
from zorro.modalities.audio import AUDIO_OPTIONS, AudioTokenizer
from zorro.modalities.base import ModalityTokens, PositionTable, extra_input_names
from zorro.modalities.sequence import SequenceTokenizer
from zorro.modalities.text import TEXT_OPTIONS, TextTokenizer
from zorro.modalities.video import VIDEO_OPTIONS, VideoTokenizer

__all__ = [
    "AUDIO_OPTIONS", "VIDEO_OPTIONS", "TEXT_OPTIONS", "ModalityTokens", "PositionTable", "AudioTokenizer", "VideoTokenizer",
    "TextTokenizer", "SequenceTokenizer", "register_modality_kind", "modality_kinds", "kind_class", "check_spec",
    "build_tokenizer", "extra_input_names",
]

_KINDS: dict[str, type[nn.Module]] = {}
_BUILTIN = ("audio", "video", "text", "sequence")


def register_modality_kind(kind: str, cls: type[nn.Module], *, replace: bool = False) -> type[nn.Module]:
    """Make ``kind`` usable in a modality spec (``{"kind": kind, ...options}``).

    Args:
        kind: the kind's name (a lower-case identifier).
        cls: an ``nn.Module`` class; ``cls(dim, **options)`` builds the tokenizer and its
            ``forward(x, *, <extras>)`` returns ``(b, n, dim)`` tokens or a
            :class:`ModalityTokens` (see the module docstring).
        replace: allow registering a kind name again (the built-in kinds cannot be replaced).

    Returns:
        ``cls`` (so it can be used as a decorator through ``functools.partial``).
    """
    if not isinstance(kind, str) or not kind.isidentifier() or kind != kind.lower():
        raise ValueError(f"a modality kind must be a lower-case identifier, got {kind!r}")
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise TypeError(f"a modality kind must be an nn.Module class, got {cls!r}")
    if kind in _KINDS and _KINDS[kind] is not cls and (kind in _BUILTIN or not replace):
        why = "a built-in kind" if kind in _BUILTIN else "already registered (pass replace=True to replace it)"
        raise ValueError(f"modality kind {kind!r} is {why}")
    _KINDS[kind] = cls
    return cls


for _kind, _cls in zip(_BUILTIN, (AudioTokenizer, VideoTokenizer, TextTokenizer, SequenceTokenizer)):
    register_modality_kind(_kind, _cls)


def modality_kinds() -> tuple[str, ...]:
    """Names of the registered kinds (built-in first)."""
    return tuple(_KINDS)


def kind_class(kind: str, *, modality: str | None = None) -> type[nn.Module]:
    """The tokenizer class registered for ``kind``; ``ValueError`` naming how to register it."""
    cls = _KINDS.get(kind)
    if cls is None:
        where = f"modality {modality!r} has kind {kind!r}" if modality else f"modality kind {kind!r}"
        raise ValueError(
            f"{where}, which is not registered; define its tokenizer module and call "
            f"zorro.register_modality_kind({kind!r}, YourTokenizer) before building or loading the model. "
            f"Registered kinds: {list(_KINDS)}"
        )
    return cls


def check_spec(name: str, spec: Any) -> dict[str, Any]:
    """Validate one modality's spec; returns a JSON-ready copy ``{"kind": ..., **options}``.

    Checks the name, that the kind is registered, that the options are JSON values, and that
    the kind's constructor takes them (unknown options and missing required ones raise
    ``ValueError`` naming them).
    """
    check_modality_name(name)
    if not isinstance(spec, Mapping) or not isinstance(spec.get("kind"), str):
        raise ValueError(f"modality {name!r}: a spec must be a dict with a 'kind' (one of {list(_KINDS)}), got {spec!r}")
    cls = kind_class(spec["kind"], modality=name)
    options = {k: (list(v) if isinstance(v, tuple) else v) for k, v in spec.items() if k != "kind"}
    if "pos_embed" in options:
        raise ValueError(f"modality {name!r}: pos_embed is a model-wide setting (ZorroConfig.pos_embed), not a modality option")
    try:
        json.dumps(options)
    except (TypeError, ValueError) as err:
        raise ValueError(f"modality {name!r}: options must be JSON values (they are saved in config.json): {err}") from None
    params = inspect.signature(cls).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        known = [p for p in params if p not in ("self", "dim", "pos_embed")]
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise ValueError(f"modality {name!r} (kind {spec['kind']!r}): unknown options {unknown}; the kind takes {known}")
        required = [p.name for p in params.values() if p.default is inspect.Parameter.empty and p.name not in ("self", "dim")
                    and p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        missing = [p for p in required if p not in options]
        if missing:
            raise ValueError(f"modality {name!r} (kind {spec['kind']!r}) needs the options {missing}")
    return {"kind": spec["kind"], **options}


def build_tokenizer(name: str, spec: Mapping[str, Any], dim: int, pos_embed: str = "sincos") -> nn.Module:
    """The tokenizer module of modality ``name`` from its (checked) spec, for model width ``dim``."""
    spec = check_spec(name, spec)
    cls = kind_class(spec["kind"], modality=name)
    options = {k: v for k, v in spec.items() if k != "kind"}
    if "pos_embed" in inspect.signature(cls).parameters:
        options["pos_embed"] = pos_embed
    try:
        return cls(dim, **options)
    except (TypeError, ValueError) as err:
        raise type(err)(f"modality {name!r} (kind {spec['kind']!r}): {err}") from err
