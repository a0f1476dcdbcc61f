"""The one exception a damaged or unsupported media file ends in: :class:`DecodeError`."""

from __future__ import annotations

import os


class DecodeError(RuntimeError):
    """A media file could not be read at all. ``path`` names the file; the message says why."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot decode {self.path!r}: {reason}")
