"""Training checkpoints: model + optimizer + scheduler + step + RNG states + config, atomically.

A run directory holds one sub-directory per checkpoint and a ``latest`` pointer::

    run_dir/
      ckpt-000100/
        model.safetensors   model weights (safetensors)
        config.json         the model's config (zorro.hub format): the folder also loads with
                            Zorro.from_pretrained(run_dir / "ckpt-000100")
        state.pt            {"optimizer", "scheduler", "scaler", "rng"} via torch.save, read back
                            with torch.load(weights_only=True): tensors and plain containers only
        meta.json           format version, step, training config, extra, file list (written last)
      ckpt-000200/
      latest                "ckpt-000200\\n"

Atomicity: everything is written into ``ckpt-000200.tmp-XXXX/`` (each file fsynced, then the
directory), renamed to ``ckpt-000200/`` with ``os.replace``, the run directory fsynced, and only
then is ``latest`` replaced (temporary file, fsync, rename). A process killed at any moment
leaves the previous checkpoint and a ``latest`` pointing to a complete checkpoint;
:func:`latest_checkpoint` ignores ``*.tmp-*`` leftovers and falls back to scanning when the
pointer is stale.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from zorro.fileio import atomic_write_text, fsync_dir, umask
from zorro.hub import (
    CONFIG_NAME,
    RUNTIME_OPTIONS,
    WEIGHTS_NAME,
    _config_document,
    atomic_save_safetensors,
    load_state_dict_file,
    plain_state_dict,
    strict_load_state_dict,
    unwrap_model,
)

logger = logging.getLogger(__name__)

__all__ = [
    "CHECKPOINT_FORMAT_VERSION",
    "LATEST_NAME",
    "checkpoint_name",
    "get_rng_state",
    "latest_checkpoint",
    "list_checkpoints",
    "load_training_checkpoint",
    "save_training_checkpoint",
    "set_rng_state",
]

CHECKPOINT_FORMAT_VERSION = 1
CHECKPOINT_KIND = "zorro-training-checkpoint"
LATEST_NAME = "latest"
META_NAME = "meta.json"
STATE_NAME = "state.pt"
_NAME_RE = re.compile(r"^ckpt-(\d+)$")


def checkpoint_name(step: int) -> str:
    """Directory name of the checkpoint at ``step``: ``ckpt-000100`` (at least 6 digits)."""
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise ValueError(f"step must be an int >= 0, got {step!r}")
    return f"ckpt-{step:06d}"


# ------------------------------------------------------------------------------ RNG states


def get_rng_state() -> dict[str, Any]:
    """RNG states of Python's ``random``, NumPy's global generator, torch (CPU) and every CUDA
    device (if CUDA is initialised), as tensors and plain containers (``weights_only``-safe)."""
    np_state = np.random.get_state(legacy=False)
    if np_state.get("bit_generator") != "MT19937":
        raise ValueError(f"unsupported numpy global bit generator {np_state.get('bit_generator')!r}")
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`get_rng_state` returned (CUDA states only if the device count matches)."""
    if "python" in state:
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
    if "numpy" in state:
        s = state["numpy"]
        np.random.set_state(
            {
                "bit_generator": "MT19937",
                "state": {"key": s["key"].numpy().astype(np.uint32), "pos": int(s["pos"])},
                "has_gauss": int(s["has_gauss"]),
                "gauss": float(s["gauss"]),
            }
        )
    if "torch" in state:
        torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)
        else:
            warnings.warn(
                f"checkpoint has CUDA RNG states for {len(cuda_states)} devices but {torch.cuda.device_count()} "
                "are visible; CUDA RNG states not restored",
                stacklevel=2,
            )


# ------------------------------------------------------------------------------ save


def _check_json(value: Any, name: str) -> Any:
    try:
        json.dumps(value)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be JSON-serialisable (dicts, lists, str, numbers, bool, None): {err}") from None
    return value


def _torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` then fsync (separate so tests can simulate a crash here)."""
    with open(path, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())


def save_training_checkpoint(
    run_dir: str | os.PathLike,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    step: int,
    config: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
    scaler: Any = None,
    keep_last: int | None = None,
) -> Path:
    """Atomically write the checkpoint ``run_dir/ckpt-{step:06d}`` and point ``latest`` at it.

    Args:
        run_dir: the run's directory (created if needed).
        model: the model; ``DistributedDataParallel`` and ``torch.compile`` wrappers are
            unwrapped, and compiled submodules saved under their plain names (keys never carry
            ``module.`` / ``_orig_mod.`` prefixes).
        optimizer, scheduler, scaler: objects with ``state_dict()`` (optional).
        step: the global optimisation step (int >= 0), also the directory name.
        config: the training configuration (JSON-serialisable dict).
        extra: anything else to resume with (JSON-serialisable dict: epoch, best metric, ...).
        keep_last: if given, delete all but the newest ``keep_last`` checkpoints afterwards.

    Returns:
        The checkpoint directory.

    An existing checkpoint of the same step is replaced. A crash or kill at any moment
    leaves the previous ``latest`` checkpoint loadable.
    """
    name = checkpoint_name(step)
    config = dict(_check_json(config or {}, "config"))
    extra = dict(_check_json(extra or {}, "extra"))
    if keep_last is not None and (not isinstance(keep_last, int) or keep_last < 1):
        raise ValueError(f"keep_last must be an int >= 1 or None, got {keep_last!r}")
    inner = unwrap_model(model)
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    final = run / name
    tmp = Path(tempfile.mkdtemp(prefix=f"{name}.tmp-", dir=run))
    os.chmod(tmp, 0o777 & ~umask())  # mkdtemp makes 0700 directories
    try:
        atomic_save_safetensors(tmp / WEIGHTS_NAME, plain_state_dict(inner), {"format": "pt", "step": str(step)})
        model_config = None
        if hasattr(inner, "config") and hasattr(inner.config, "to_dict"):
            doc = _config_document(inner)
            model_config = doc["config"]
            atomic_write_text(tmp / CONFIG_NAME, json.dumps(doc, indent=2) + "\n")
        state = {
            "optimizer": optimizer.state_dict() if optimizer is not None else None,
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "scaler": scaler.state_dict() if scaler is not None else None,
            "rng": get_rng_state(),
        }
        _torch_save(state, tmp / STATE_NAME)
        from zorro import __version__

        meta = {
            "format_version": CHECKPOINT_FORMAT_VERSION,
            "kind": CHECKPOINT_KIND,
            "step": step,
            "library_version": __version__,
            "torch_version": torch.__version__,
            "saved_unix_time": time.time(),
            "model_class": type(inner).__name__,
            "model_config": model_config,
            "config": config,
            "extra": extra,
            "has": {"optimizer": optimizer is not None, "scheduler": scheduler is not None, "scaler": scaler is not None},
        }
        atomic_write_text(tmp / META_NAME, json.dumps(meta, indent=2) + "\n")
        fsync_dir(tmp)
        old = None
        if final.exists():  # same step saved again: move the old one aside, then swap
            old = Path(tempfile.mkdtemp(prefix=f"{name}.old-", dir=run))
            os.rmdir(old)
            os.replace(final, old)
        os.replace(tmp, final)
        fsync_dir(run)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    atomic_write_text(run / LATEST_NAME, name + "\n")
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    logger.info("saved training checkpoint %s (step %d)", final, step)
    if keep_last is not None:
        for stale in list_checkpoints(run)[:-keep_last]:
            if stale != final:
                shutil.rmtree(stale, ignore_errors=True)
    return final


# ------------------------------------------------------------------------------ find


def _is_complete(path: Path) -> bool:
    return path.is_dir() and (path / META_NAME).is_file() and (path / WEIGHTS_NAME).is_file()


def list_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoints ``ckpt-<step>`` of ``run_dir``, oldest step first (leftover
    ``*.tmp-*`` directories of interrupted saves are ignored)."""
    run = Path(run_dir)
    if not run.is_dir():
        return []
    found = []
    for child in run.iterdir():
        m = _NAME_RE.match(child.name)
        if m and _is_complete(child):
            found.append((int(m.group(1)), child))
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The checkpoint ``latest`` points to, or (pointer missing or stale) the complete
    checkpoint with the highest step; None when ``run_dir`` has none."""
    run = Path(run_dir)
    pointer = run / LATEST_NAME
    if pointer.is_file():
        name = pointer.read_text(encoding="utf-8").strip()
        if _NAME_RE.match(name) and _is_complete(run / name):
            return run / name
        logger.warning("%s points to %r, which is not a complete checkpoint; scanning %s", pointer, name, run)
    found = list_checkpoints(run)
    return found[-1] if found else None


# ------------------------------------------------------------------------------ load


def _resolve(path: Path) -> Path:
    if (path / META_NAME).is_file():
        return path
    if path.is_dir():
        found = latest_checkpoint(path)
        if found is not None:
            return found
    raise FileNotFoundError(f"no training checkpoint at {path} (neither a checkpoint directory nor a run directory holding one)")


def load_training_checkpoint(
    path: str | os.PathLike,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    scaler: Any = None,
    restore_rng: bool = False,
    map_location: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Restore a checkpoint written by :func:`save_training_checkpoint`.

    Args:
        path: a checkpoint directory, or a run directory (its :func:`latest_checkpoint`).
        model: receives the weights, strictly (wrappers are unwrapped). A model whose config
            differs from the saved one in anything but ``attn_backend`` gets a warning.
        optimizer, scheduler, scaler: receive their states when given; asking for a state the
            checkpoint lacks raises ``ValueError``.
        restore_rng: also restore the Python, NumPy, torch and CUDA RNG states.
        map_location: where tensors are read (the optimizer moves its state to its params).

    Returns:
        ``{"step", "config", "extra", "model_config", "path", "format_version"}``.

    Raises:
        zorro.hub.WeightsMismatchError: model keys or shapes differ (listed).
        zorro.hub.UnsafeCheckpointError: ``state.pt`` holds anything but tensors and plain
            containers (refused unexecuted).
    """
    ckpt = _resolve(Path(path))
    try:
        meta = json.loads((ckpt / META_NAME).read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{ckpt / META_NAME} is not valid JSON: {err}") from None
    if meta.get("kind") != CHECKPOINT_KIND:
        raise ValueError(f"{ckpt} is not a zorro training checkpoint (kind={meta.get('kind')!r})")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > CHECKPOINT_FORMAT_VERSION:
        raise ValueError(f"{ckpt} has checkpoint format {version!r}; this zorro reads <= {CHECKPOINT_FORMAT_VERSION}")

    inner = unwrap_model(model)
    saved_cfg = meta.get("model_config")
    if saved_cfg is not None and hasattr(inner, "config") and hasattr(inner.config, "to_dict"):
        current = inner.config.to_dict()
        diff = sorted(k for k in set(saved_cfg) | set(current) if k not in RUNTIME_OPTIONS and saved_cfg.get(k) != current.get(k))
        if diff:
            warnings.warn(
                f"the model's config differs from the checkpoint's in {diff}: "
                + ", ".join(f"{k}: saved {saved_cfg.get(k)!r} vs model {current.get(k)!r}" for k in diff),
                stacklevel=2,
            )
    weights = load_state_dict_file(ckpt / WEIGHTS_NAME, map_location=map_location)
    strict_load_state_dict(inner, weights, source=f"checkpoint {ckpt}")

    state = _load_state_file(ckpt / STATE_NAME, map_location)
    for obj, key in ((optimizer, "optimizer"), (scheduler, "scheduler"), (scaler, "scaler")):
        if obj is None:
            continue
        if state.get(key) is None:
            raise ValueError(f"{ckpt} has no {key} state, but a {key} was given to restore")
        obj.load_state_dict(state[key])
    if restore_rng:
        set_rng_state(state["rng"])
    logger.info("loaded training checkpoint %s (step %d)", ckpt, meta["step"])
    return {
        "step": int(meta["step"]),
        "config": meta.get("config", {}),
        "extra": meta.get("extra", {}),
        "model_config": saved_cfg,
        "path": ckpt,
        "format_version": version,
    }


def _load_state_file(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint's ``state.pt`` with ``torch.load(weights_only=True)`` (never runs pickled code)."""
    from zorro.hub import safe_torch_load

    if not path.is_file():
        raise FileNotFoundError(f"checkpoint is missing {path.name}: {path}")
    try:
        state = safe_torch_load(path, map_location)
    except (RuntimeError, EOFError) as err:  # torch.load on a truncated or overwritten file
        raise ValueError(f"{path} is not a readable checkpoint state file (truncated or damaged): {err}") from None
    if not isinstance(state, dict) or "rng" not in state:
        raise ValueError(f"{path} is not a zorro checkpoint state file")
    return state
