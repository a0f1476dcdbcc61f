"""Zorro: the masked multimodal transformer (Recasens et al., arXiv 2301.09595)."""

from zorro.modalities import ModalityTokens, register_modality_kind
from zorro.model import Zorro, ZorroConfig, ZorroFeatures, ZorroOutput
from zorro.tokenizer import ByteTokenizer
from zorro.tokens import TokenTypes
from zorro.version import __version__

__all__ = ["ByteTokenizer", "ModalityTokens", "TokenTypes", "Zorro", "ZorroConfig", "ZorroFeatures", "ZorroOutput",
           "register_modality_kind"]
