"""Zorro: the masked multimodal transformer (Recasens et al., arXiv 2301.09595)."""

from zorro.model import Zorro, ZorroConfig, ZorroFeatures, ZorroOutput
from zorro.tokens import TokenTypes

__all__ = ["TokenTypes", "Zorro", "ZorroConfig", "ZorroFeatures", "ZorroOutput"]
__version__ = "0.1.0"
