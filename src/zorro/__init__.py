"""Zorro: the masked multimodal transformer (Recasens et al., arXiv 2301.09595)."""

import importlib

from zorro.version import __version__

__all__ = ["ByteTokenizer", "ModalityTokens", "TokenTypes", "Zorro", "ZorroConfig", "ZorroFeatures", "ZorroOutput",
           "register_modality_kind"]

# imported on first use (PEP 562): commands that never build a model (``zorro prepare``,
# ``zorro --help``) start without loading torch
_LAZY = {"Zorro": "zorro.model", "ZorroConfig": "zorro.model", "ZorroFeatures": "zorro.model", "ZorroOutput": "zorro.model",
         "TokenTypes": "zorro.tokens", "ByteTokenizer": "zorro.tokenizer", "ModalityTokens": "zorro.modalities",
         "register_modality_kind": "zorro.modalities"}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'zorro' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
