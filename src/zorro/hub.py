"""Saving, sharing and loading Zorro models: ``save_pretrained`` / ``from_pretrained``.

A *pretrained folder* holds two files (the layout of the Hugging Face ecosystem, so a
folder can be pushed to the Hub as is):

* ``model.safetensors`` -- every tensor of ``model.state_dict()`` (safetensors: no code is
  ever executed when it is read), with metadata ``{"format": "pt", "zorro_format_version": "1"}``
  (``"2"`` for a model with a modality table).
* ``config.json`` -- ``{"format_version": 1, "library": "zorro", "library_version": ...,
  "model_type": "zorro", "config": ZorroConfig.to_dict()}``: every constructor option
  (``format_version`` 2 when ``config`` holds a modality table).

Loading is strict: a missing or unexpected tensor or a shape mismatch raises
:class:`WeightsMismatchError` listing every offending key. Older config formats are upgraded
(:func:`upgrade_config`); a format newer than this library raises.

**No pickle is ever executed.** Folders holding only ``pytorch_model.bin`` / ``*.pt`` /
``*.pth`` / ``*.ckpt`` are refused by :func:`load_pretrained` with an explanation;
:func:`load_state_dict_file` reads such a file only through
``torch.load(weights_only=True)``, which rejects any pickled object that is not a tensor or
plain container (see ``docs/checkpoints.md``).

With ``huggingface_hub`` installed (the ``hub`` extra), :func:`load_pretrained` also accepts
a Hub repo id (``"user/zorro-base"``) and :func:`push_to_hub` uploads a model, following the
conventions of ``huggingface_hub.PyTorchModelHubMixin`` (same file names, same keyword
arguments).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from zorro.fileio import atomic_write_text, fsync_dir, fsync_file, new_temp_path, umask
from zorro.model_config import ZorroConfig
from zorro.version import __version__

logger = logging.getLogger(__name__)

__all__ = [
    "CONFIG_NAME",
    "FORMAT_VERSION",
    "PICKLE_SUFFIXES",
    "UnsafeCheckpointError",
    "WEIGHTS_NAME",
    "WeightsMismatchError",
    "atomic_save_safetensors",
    "atomic_write_text",
    "load_pretrained",
    "load_state_dict_file",
    "push_to_hub",
    "read_config",
    "resolve_pretrained",
    "save_pretrained",
    "strict_load_state_dict",
    "unwrap_model",
    "upgrade_config",
]

#: Newest version of the ``config.json`` layout (what :func:`save_pretrained` writes for a
#: model with a modality table; a default audio-video model is still written as version 1,
#: which every zorro reads).
FORMAT_VERSION = 2
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
#: File suffixes that hold pickles (PyTorch's ``torch.save`` format).
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
#: Options :func:`load_pretrained` may override: they change how the model runs, not what it computes.
RUNTIME_OPTIONS = ("attn_backend",)

# Options of ZorroConfig that format version 0 (zorro 0.0.x) did not have, and the value that
# reproduces what a 0.0.x model computed (not necessarily today's default).
_V0_NEW_OPTIONS = {"audio_frontend": "spectrogram", "pos_embed": "none"}
_V0_DROPPED_KEYS = ("zorro_version",)


class WeightsMismatchError(ValueError):
    """The tensors of a checkpoint do not fit the model (missing, unexpected, wrong shape)."""


class UnsafeCheckpointError(ValueError):
    """A checkpoint would need arbitrary unpickling (code execution) to be read; refused."""


# ------------------------------------------------------------------------------ file helpers


def atomic_save_safetensors(path: str | os.PathLike, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None) -> Path:
    """Save a flat ``{name: tensor}`` dict to ``path`` in safetensors format, atomically.

    Tensors are detached, made contiguous and moved to CPU; tensors sharing storage are
    copied (safetensors stores each tensor once).
    """
    from safetensors.torch import save_file

    final = Path(path)
    cpu: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for key, value in tensors.items():
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"tensor {key!r} is a {type(value).__name__}; safetensors stores tensors only")
        t = value.detach().to("cpu").contiguous()
        ptr = t.untyped_storage().data_ptr() if t.numel() else -1
        if ptr in seen and ptr != -1:
            t = t.clone()
        seen.add(ptr)
        cpu[key] = t
    meta = dict(metadata or {})
    meta[DIGESTS_KEY] = json.dumps(tensor_digests(cpu), sort_keys=True)
    tmp = new_temp_path(final)
    try:
        save_file(cpu, str(tmp), metadata=meta)
        os.chmod(tmp, 0o666 & ~umask())
        fsync_file(tmp)
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(final.parent)
    return final


# safetensors metadata key of the per-tensor checksums written by atomic_save_safetensors
DIGESTS_KEY = "zorro_tensor_sha256"


def tensor_digests(tensors: Mapping[str, torch.Tensor]) -> dict[str, str]:
    """``{name: first 16 hex digits of the SHA-256 of dtype, shape and bytes}`` for CPU
    tensors: the checksums saved with a safetensors file, checked when it is read."""
    out = {}
    for name, t in tensors.items():
        h = hashlib.sha256(f"{t.dtype}|{tuple(t.shape)}|".encode())
        if t.numel():
            h.update(t.detach().contiguous().view(-1).view(torch.uint8).numpy())
        out[name] = h.hexdigest()[:16]
    return out


def _read_safetensors(path: Path, map_location: str | torch.device) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file, checked against the checksums saved with them (files
    written by other tools have none: read as they are).

    Raises:
        ValueError: naming the file: it is truncated or its header is damaged, or the named
            tensors do not match their saved checksums (damaged data).
    """
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            saved = (f.metadata() or {}).get(DIGESTS_KEY)
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except SafetensorError as err:
        raise ValueError(f"{path} is not a readable safetensors file (truncated or damaged): {err}") from None
    if saved is not None:
        try:
            expected = json.loads(saved)
        except json.JSONDecodeError:
            raise ValueError(f"{path}: the checksum record {DIGESTS_KEY!r} in its header is damaged") from None
        got = tensor_digests(tensors)
        bad = sorted(k for k in set(expected) | set(got) if expected.get(k) != got.get(k))
        if bad:
            raise ValueError(
                f"{path} is damaged: {len(bad)} tensor(s) do not match the checksums saved with them: {bad[:10]}"
            )
    if str(map_location) != "cpu":
        tensors = {k: v.to(map_location) for k, v in tensors.items()}
    return tensors


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain module inside ``DistributedDataParallel``/``DataParallel`` (``.module``) and
    ``torch.compile`` (``._orig_mod``) wrappers, however nested."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected a torch.nn.Module, got {type(model).__name__}")
    seen = 0
    while seen < 16:
        seen += 1
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(getattr(model, "_orig_mod"), nn.Module):
            model = model._orig_mod
        else:
            break
    return model


# ------------------------------------------------------------------------------ reading tensors


def safe_torch_load(path: Path, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``: tensors and plain containers only.

    Raises:
        UnsafeCheckpointError: the pickle holds anything else (nothing of it is executed).
    """
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise UnsafeCheckpointError(
            f"{path} holds pickled objects other than tensors and plain containers; it was refused without "
            f"running any of them (torch.load(weights_only=True) said: {str(err).splitlines()[0]}). Re-save the "
            "weights as a plain state dict (torch.save(model.state_dict(), ...)) or as safetensors."
        ) from None


def load_state_dict_file(path: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Read a flat ``{name: tensor}`` dict without ever executing pickled code.

    Args:
        path: a ``.safetensors`` file, or a ``torch.save`` file (``.pt``, ``.pth``, ``.bin``,
            ``.ckpt``), which is read with ``torch.load(weights_only=True)``: only tensors and
            plain containers (dict, list, tuple, str, int, float, bool, None) are accepted.
            A checkpoint nesting the weights under ``"state_dict"``, ``"model"`` or
            ``"model_state_dict"`` is unwrapped, and a ``"module."`` prefix (DDP) removed.
        map_location: device to load the tensors on.

    Returns:
        ``{name: tensor}``.

    Raises:
        UnsafeCheckpointError: the pickle holds anything but tensors and plain containers
            (nothing of it is executed).
        FileNotFoundError, ValueError: missing file, unknown format, no tensors found.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such weights file: {path}")
    if path.suffix == ".safetensors":
        return _read_safetensors(path, map_location)
    try:
        obj = safe_torch_load(path, map_location)
    except RuntimeError as err:
        if "zip" in str(err) or "magic number" in str(err) or "invalid load key" in str(err):
            raise ValueError(f"{path} is not a torch.save file nor a safetensors file: {err}") from None
        raise
    return _as_flat_state_dict(obj, path)


def _as_flat_state_dict(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, Mapping) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
        for key in ("state_dict", "model", "model_state_dict"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj:
        raise ValueError(f"{path} does not hold a state dict (a dict of tensors); found {type(obj).__name__}")
    out: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"{path}: entry {key!r} is a {type(value).__name__}, expected a tensor")
        out[key] = value
    if all(k.startswith("module.") for k in out):
        out = {k[len("module."):]: v for k, v in out.items()}
    return out


def strict_load_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor], *, source: str = "checkpoint") -> None:
    """Load ``state_dict`` into ``model`` (unwrapped first) strictly.

    Raises:
        WeightsMismatchError: listing every missing key, unexpected key and shape mismatch
            (``key: checkpoint (shape) vs model (shape)``); the model is left unchanged.
    """
    model = unwrap_model(model)
    actual = model.state_dict()  # a compiled submodule's keys carry "_orig_mod.": matched without it
    expected = {strip_compile_prefixes(k): v for k, v in actual.items()}
    to_model = {strip_compile_prefixes(k): k for k in actual}
    state_dict = {strip_compile_prefixes(k): v for k, v in state_dict.items()}
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    shapes = sorted(
        f"{k}: {source} {tuple(state_dict[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in set(expected) & set(state_dict)
        if tuple(state_dict[k].shape) != tuple(expected[k].shape)
    )
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys ({len(missing)}): {missing}")
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {unexpected}")
        if shapes:
            parts.append(f"shape mismatches ({len(shapes)}): {shapes}")
        raise WeightsMismatchError(f"the {source} does not fit the model: " + "; ".join(parts))
    model.load_state_dict({to_model[k]: v for k, v in state_dict.items()}, strict=True)


def strip_compile_prefixes(key: str) -> str:
    """A state-dict key without the ``_orig_mod.`` segments that ``torch.compile`` wrappers of
    submodules add (``backbone._orig_mod.norm.weight`` -> ``backbone.norm.weight``)."""
    return key.replace("._orig_mod.", ".").removeprefix("_orig_mod.")


def plain_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """``model.state_dict()`` of the unwrapped model (:func:`unwrap_model`) with the keys of
    compiled submodules stripped of ``_orig_mod.`` (:func:`strip_compile_prefixes`): the keys
    of the same model uncompiled."""
    return {strip_compile_prefixes(k): v for k, v in unwrap_model(model).state_dict().items()}


# ------------------------------------------------------------------------------ config


def upgrade_config(data: Mapping[str, Any]) -> dict[str, Any]:
    """Bring a ``config.json`` of any known format version to the current one.

    Format versions:

    * ``0`` (zorro 0.0.x; a flat dict of constructor options without ``format_version``):
      options added since (``audio_frontend``, ``pos_embed``, ...) get the values that
      reproduce a 0.0.x model (``audio_frontend="spectrogram"``, ``pos_embed="none"``), the
      others ZorroConfig's defaults; ``return_token_types`` may be ints (``TokenTypes``
      values); ``zorro_version`` is dropped.
    * ``1``: ``{"format_version": 1, "library": "zorro", "library_version", "model_type":
      "zorro", "config": {...}}``.
    * ``2``: the same layout; ``config`` may hold ``modalities`` (the modality table) and
      modality names in ``return_token_types``. Written only for models that use them.

    Returns:
        The current format's dict. Raises ``ValueError`` for another library's config or a
        version newer than :data:`FORMAT_VERSION`.
    """
    if not isinstance(data, Mapping):
        raise TypeError(f"a Zorro config must be a JSON object, got {type(data).__name__}")
    version = data.get("format_version", 0)
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise ValueError(f"format_version must be a non-negative int, got {version!r}")
    if version > FORMAT_VERSION:
        raise ValueError(
            f"this config has format_version {version}, written by a newer zorro ({data.get('library_version', '?')}); "
            f"this zorro reads versions <= {FORMAT_VERSION}: upgrade zorro"
        )
    if version == 0:
        if "config" in data or "model_type" in data:
            raise ValueError("config.json has no format_version but looks nested; cannot tell its format")
        options = {k: v for k, v in data.items() if k not in _V0_DROPPED_KEYS}
        for key, value in _V0_NEW_OPTIONS.items():
            options.setdefault(key, value)
        logger.info("upgrading a format-0 Zorro config (zorro %s) to format %d", data.get("zorro_version", "0.0.x"), FORMAT_VERSION)
        data = {"format_version": 1, "library": "zorro", "library_version": data.get("zorro_version"), "model_type": "zorro", "config": options}
    if data.get("model_type", "zorro") != "zorro" or data.get("library", "zorro") != "zorro":
        raise ValueError(f"not a Zorro config: model_type={data.get('model_type')!r}, library={data.get('library')!r}")
    if not isinstance(data.get("config"), Mapping):
        raise ValueError("config.json lacks the 'config' object with the model's constructor options")
    return dict(data)


def read_config(path: str | os.PathLike):
    """Read a ``config.json`` (a file, or a folder holding one) into a :class:`zorro.ZorroConfig`.

    Older format versions are upgraded (:func:`upgrade_config`); unknown options raise
    ``ValueError``.
    """
    path = Path(path)
    file = path / CONFIG_NAME if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"no {CONFIG_NAME} at {path}")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{file} is not valid JSON (truncated or damaged?): {err}") from None
    try:
        return ZorroConfig.from_dict(upgrade_config(data)["config"])
    except (ValueError, TypeError) as err:  # the message names the field; add the file
        raise type(err)(f"{file}: {err}") from err


def _config_document(model: nn.Module) -> dict[str, Any]:
    config = model.config.to_dict()
    return {
        "format_version": FORMAT_VERSION if "modalities" in config else 1,
        "library": "zorro",
        "library_version": __version__,
        "model_type": "zorro",
        "config": config,
    }


# ------------------------------------------------------------------------------ save / load


def save_pretrained(
    model: nn.Module,
    directory: str | os.PathLike,
    *,
    config: Any = None,
    model_card_kwargs: Mapping[str, Any] | None = None,
    push_to_hub: bool = False,
    repo_id: str | None = None,
    **push_to_hub_kwargs: Any,
) -> Path:
    """Write ``model.safetensors`` and ``config.json`` into ``directory`` (created if needed).

    Each file is written atomically (temporary name, fsync, rename). DDP / ``torch.compile``
    wrappers are unwrapped. Tensors keep their dtype (``model.half()`` saves float16).

    Args:
        model: a :class:`zorro.Zorro` (or a wrapper of one).
        directory: output folder.
        config: accepted for ``PyTorchModelHubMixin`` compatibility; must be None or equal to
            the model's own config (which is always what is written).
        model_card_kwargs: accepted for ``PyTorchModelHubMixin`` compatibility; with
            ``push_to_hub`` a minimal ``README.md`` model card is written if absent.
        push_to_hub, repo_id, **push_to_hub_kwargs: upload afterwards with :func:`push_to_hub`
            (``repo_id`` defaults to the folder name).

    Returns:
        The folder path (the commit URL when ``push_to_hub``).
    """
    inner = unwrap_model(model)
    if not hasattr(inner, "config") or not hasattr(inner.config, "to_dict"):
        raise TypeError(f"save_pretrained expects a zorro.Zorro model, got {type(inner).__name__}")
    doc = _config_document(inner)
    if config is not None:
        given = config.to_dict() if hasattr(config, "to_dict") else dict(config)
        if given not in (doc, doc["config"]):
            raise ValueError("config= differs from the model's own config; the model's config is what gets saved")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    atomic_save_safetensors(out / WEIGHTS_NAME, plain_state_dict(inner), {"format": "pt", "zorro_format_version": str(doc["format_version"])})
    atomic_write_text(out / CONFIG_NAME, json.dumps(doc, indent=2, sort_keys=False) + "\n")
    logger.debug("saved Zorro (%d tensors) to %s", len(inner.state_dict()), out)
    if push_to_hub:
        return _upload(inner, repo_id or out.name, model_card_kwargs=model_card_kwargs, **push_to_hub_kwargs)
    return out


def _pickle_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_file() and p.suffix in PICKLE_SUFFIXES)


def _refuse_pickle(where: Path, names: list[str]) -> UnsafeCheckpointError:
    return UnsafeCheckpointError(
        f"{where} holds pickle weights ({', '.join(names)}) and no {WEIGHTS_NAME}; zorro never unpickles model "
        f"files (unpickling can run arbitrary code). If it is a zorro-pytorch state dict, convert it with "
        f"`zorro convert --from zorro-pytorch FILE OUT_DIR`; if you trust it and it is a plain state dict, read it "
        f"with zorro.hub.load_state_dict_file (torch.load(weights_only=True)) and save_pretrained the model."
    )


def resolve_pretrained(
    name_or_path: str | os.PathLike,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    token: str | bool | None = None,
    force_download: bool = False,
    local_files_only: bool = False,
) -> tuple[Path, Path]:
    """Locate ``(config.json, model.safetensors)`` for a local folder or a Hub repo id.

    A local folder (or a ``model.safetensors`` file with ``config.json`` beside it) is used
    as is. Otherwise ``name_or_path`` is taken as a Hugging Face Hub repo id and the two files
    are fetched with ``huggingface_hub.hf_hub_download`` (needs the ``hub`` extra).

    Raises:
        UnsafeCheckpointError: the location holds only pickle weights (never opened).
        FileNotFoundError: nothing usable there.
    """
    path = Path(name_or_path)
    if path.is_file():
        if path.suffix in PICKLE_SUFFIXES:
            raise _refuse_pickle(path.parent, [path.name])
        if path.suffix != ".safetensors":
            raise ValueError(f"{path} is neither a pretrained folder nor a .safetensors file")
        config = path.parent / CONFIG_NAME
        if not config.is_file():
            raise FileNotFoundError(f"{path} has no {CONFIG_NAME} beside it")
        return config, path
    if path.is_dir():
        weights, config = path / WEIGHTS_NAME, path / CONFIG_NAME
        if not weights.is_file():
            pickles = _pickle_files(path)
            if pickles:
                raise _refuse_pickle(path, pickles)
            raise FileNotFoundError(f"{path} has no {WEIGHTS_NAME}; it was not written by save_pretrained")
        if not config.is_file():
            raise FileNotFoundError(f"{path} has {WEIGHTS_NAME} but no {CONFIG_NAME}")
        return config, weights
    text = str(name_or_path)
    looks_like_repo = text.count("/") <= 1 and not text.startswith((".", "/", "~")) and "\\" not in text and bool(text)
    if not looks_like_repo:
        raise FileNotFoundError(f"no pretrained folder at {path}")
    try:
        import huggingface_hub
    except ImportError:
        raise FileNotFoundError(
            f"no local folder {text!r}; to load it as a Hugging Face Hub repo id install the hub extra "
            "(pip install 'zorro[hub]')"
        ) from None
    try:
        from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError
    except ImportError:  # huggingface_hub < 0.23
        from huggingface_hub.utils import EntryNotFoundError, RepositoryNotFoundError
    kwargs = dict(revision=revision, cache_dir=cache_dir, token=token, force_download=force_download, local_files_only=local_files_only)
    try:
        config = huggingface_hub.hf_hub_download(text, CONFIG_NAME, **kwargs)
        try:
            weights = huggingface_hub.hf_hub_download(text, WEIGHTS_NAME, **kwargs)
        except EntryNotFoundError:
            raise UnsafeCheckpointError(
                f"Hub repo {text!r} has no {WEIGHTS_NAME}; zorro does not load pickle weights (pytorch_model.bin)"
            ) from None
    except RepositoryNotFoundError:
        raise FileNotFoundError(f"{text!r} is neither a local folder nor a Hub repository") from None
    except UnsafeCheckpointError:
        raise
    except Exception as err:  # offline, no network, gated repo, ...: report it as "not found" with the cause
        raise FileNotFoundError(
            f"{text!r} is not a local folder, and fetching it as a Hugging Face Hub repo id failed "
            f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
        ) from err
    return Path(config), Path(weights)


def load_pretrained(
    cls: type,
    name_or_path: str | os.PathLike,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    token: str | bool | None = None,
    force_download: bool = False,
    local_files_only: bool = False,
    **overrides: Any,
):
    """Rebuild a model saved by :func:`save_pretrained` (strict, never unpickles).

    Args:
        cls: :class:`zorro.Zorro` or a subclass.
        name_or_path: a folder with ``config.json`` + ``model.safetensors``, or a Hub repo id
            (with the ``hub`` extra; ``revision``, ``cache_dir``, ``token``,
            ``force_download``, ``local_files_only`` are passed to ``hf_hub_download``).
        device: where the weights are loaded.
        dtype: cast the model to this floating dtype; default keeps the saved dtype.
        **overrides: runtime-only options (``attn_backend``); anything else raises
            ``TypeError`` because it would change the function the weights were trained for.

    Returns:
        The model in eval mode; its outputs equal the saved model's bit for bit (same
        device, dtype and backend).

    Raises:
        WeightsMismatchError: missing / unexpected keys or shape mismatches (listed).
        UnsafeCheckpointError: only pickle weights found (nothing is unpickled).
    """
    bad = sorted(set(overrides) - set(RUNTIME_OPTIONS))
    if bad:
        raise TypeError(
            f"from_pretrained can override only runtime options {list(RUNTIME_OPTIONS)}, got {bad}; "
            "architecture options come from config.json"
        )
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise TypeError(f"dtype must be a floating torch.dtype or None, got {dtype!r}")
    config_file, weights_file = resolve_pretrained(
        name_or_path, revision=revision, cache_dir=cache_dir, token=token,
        force_download=force_download, local_files_only=local_files_only,
    )
    config = read_config(config_file)
    if overrides:
        config = dataclasses.replace(config, **overrides)  # re-validated by ZorroConfig.__post_init__
    state = load_state_dict_file(weights_file, map_location=device)
    model = cls(config=config)
    saved_dtypes = {t.dtype for t in state.values() if t.is_floating_point()}
    if len(saved_dtypes) == 1:
        model.to(next(iter(saved_dtypes)))
    model.to(device)
    strict_load_state_dict(model, state, source=f"checkpoint {weights_file}")
    if dtype is not None:
        model.to(dtype)
    return model.eval()


# ------------------------------------------------------------------------------ Hub upload

_MODEL_CARD = """---
library_name: zorro
tags:
- zorro
- audio-visual
- pytorch_model_hub_mixin
---

# Zorro

A Zorro masked multimodal audio-visual transformer (arXiv 2301.09595), saved with
`zorro` {version}. Load it with:

```python
from zorro import Zorro
model = Zorro.from_pretrained("{repo_id}")
```

Configuration: `dim={dim}`, `depth={depth}`, `heads={heads}`, outputs {outputs}.
"""


def push_to_hub(
    model: nn.Module,
    repo_id: str,
    *,
    commit_message: str = "Upload Zorro model",
    private: bool | None = None,
    token: str | None = None,
    branch: str | None = None,
    create_pr: bool | None = None,
    model_card_kwargs: Mapping[str, Any] | None = None,
    config: Any = None,
    **upload_kwargs: Any,
) -> str:
    """Upload ``model`` to the Hugging Face Hub repo ``repo_id`` (created if needed).

    Same arguments as ``PyTorchModelHubMixin.push_to_hub``: the model is saved with
    :func:`save_pretrained` into a temporary folder together with a ``README.md`` model card,
    then uploaded in one commit with ``HfApi.upload_folder``. Needs the ``hub`` extra.

    Returns:
        The commit URL.
    """
    return _upload(
        model, repo_id, commit_message=commit_message, private=private, token=token, branch=branch,
        create_pr=create_pr, model_card_kwargs=model_card_kwargs, config=config, **upload_kwargs,
    )


def _upload(
    model: nn.Module,
    repo_id: str,
    *,
    commit_message: str = "Upload Zorro model",
    private: bool | None = None,
    token: str | None = None,
    branch: str | None = None,
    create_pr: bool | None = None,
    model_card_kwargs: Mapping[str, Any] | None = None,
    config: Any = None,
    **upload_kwargs: Any,
) -> str:
    try:
        from huggingface_hub import HfApi
    except ImportError:
        raise ImportError("push_to_hub needs huggingface_hub: pip install 'zorro[hub]'") from None
    inner = unwrap_model(model)
    api = HfApi(token=token)
    repo_id = api.create_repo(repo_id=repo_id, private=private, exist_ok=True).repo_id
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "model"
        save_pretrained(inner, folder, config=config)
        c = inner.config
        card = _MODEL_CARD.format(
            version=__version__, repo_id=repo_id, dim=c.dim, depth=c.depth, heads=c.heads,
            outputs=[t.name for t in c.return_token_types],
        )
        extra = "".join(f"- {k}: {v}\n" for k, v in (model_card_kwargs or {}).items())
        extra = f"\n## Notes\n\n{extra}" if extra else ""
        (folder / "README.md").write_text(card + extra, encoding="utf-8")
        info = api.upload_folder(
            repo_id=repo_id, repo_type="model", folder_path=folder, commit_message=commit_message,
            revision=branch, create_pr=create_pr, **upload_kwargs,
        )
    return str(getattr(info, "commit_url", info))
