"""Zorro: the masked multimodal transformer (Recasens et al., arXiv 2301.09595)."""

from zorro.model import Zorro, ZorroConfig, ZorroFeatures, ZorroOutput
from zorro.tokens import TokenTypes
from zorro.version import __version__

__all__ = ["TokenTypes", "Zorro", "ZorroConfig", "ZorroFeatures", "ZorroOutput"]
