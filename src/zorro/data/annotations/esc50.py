"""ESC-50's annotation parser; it lives in :mod:`zorro.data.registry.esc50` (one module per
dataset) and is re-exported here, where it was first published."""

from zorro.data.registry.esc50 import ESC50, ESC50_FOLDS, ESC50_HEADER, read_esc50  # noqa: F401

__all__ = ["ESC50", "read_esc50", "ESC50_HEADER", "ESC50_FOLDS"]
