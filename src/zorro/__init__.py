"""Zorro: the masked multimodal transformer (Recasens et al., arXiv 2301.09595)."""

from zorro.tokens import TokenTypes

__all__ = ["TokenTypes"]
__version__ = "0.1.0"
