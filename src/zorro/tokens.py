"""Token types shared by the model, its masks and its outputs."""

from __future__ import annotations

from enum import Enum


class TokenTypes(Enum):
    """Type of a token in the Zorro sequence, or of a return (pooling) token.

    The integer values are those of the ``zorro-pytorch`` seed and are part of the API.
    ``GLOBAL`` is only used for return tokens: a GLOBAL return token attends to every token.
    """

    AUDIO = 0
    VIDEO = 1
    FUSION = 2
    GLOBAL = 3
