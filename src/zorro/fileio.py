"""Durable file writes shared by every part of zorro that writes files (pretrained folders,
training checkpoints, prepared shards, skip reports). Standard library only, so
:mod:`zorro.data` can use it without importing anything model-side.

A write is atomic: the bytes go to a temporary file beside the target, which is fsynced,
renamed over the target with ``os.replace`` and the folder fsynced, so a process killed at
any moment leaves either the old file or the whole new one.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["fsync_dir", "fsync_file", "umask", "new_temp_path", "write_bytes_atomic", "atomic_write_text"]


def fsync_dir(folder: str | os.PathLike) -> None:
    """fsync a folder so that renames inside it are durable (a no-op where unsupported)."""
    try:
        fd = os.open(os.fspath(folder), os.O_RDONLY)
    except OSError:  # e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_file(path: str | os.PathLike) -> None:
    """fsync an existing file's contents to disk."""
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def umask() -> int:
    """The process's current umask (read without changing it for longer than the call)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def new_temp_path(final: str | os.PathLike) -> Path:
    """A fresh empty temporary file beside ``final`` (``.<name>.tmp-XXXX``) with the
    permissions of a normal new file."""
    final = Path(final)
    fd, name = tempfile.mkstemp(prefix=f".{final.name}.tmp-", dir=final.parent)
    os.close(fd)
    os.chmod(name, 0o666 & ~umask())  # mkstemp makes 0600 files; shared outputs must stay readable
    return Path(name)


def write_bytes_atomic(path: str | os.PathLike, data: bytes, *, tmp: str | os.PathLike | None = None) -> Path:
    """Write ``data`` to ``path`` atomically (see the module docstring).

    Args:
        path: the target file.
        data: its new contents.
        tmp: the temporary file to write first (default :func:`new_temp_path`); give a fixed
            name when a restart must recognise and remove leftovers.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    final = Path(path)
    tmp = new_temp_path(final) if tmp is None else Path(tmp)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(final.parent)
    return final


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns ``path``."""
    return write_bytes_atomic(path, text.encode("utf-8"))
