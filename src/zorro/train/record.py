"""What a run records: the settings it actually trained with, so that its folder is the truth.

``config.json`` of a run folder is written from the config :func:`resolve_run_config`
returns, which differs from the config given in four ways, each logged:

* paths (``model.init_from``, manifests, shard folders, ``data.data_root``) are absolute, so
  the folder still works after ``cd`` or after it is moved;
* ``model.arch`` holds every option of the backbone actually built (all of
  :class:`~zorro.ZorroConfig`, also when it came from ``model.init_from``);
* ``data.sample_rate`` is the rate the audio was decoded at (None in a config means the
  model's rate); a rate other than the model's is refused (:func:`check_sample_rates`);
* when datasets are passed to the trainer instead of being built from the config (the demo
  and ablation recipes, ``zorro.train.train(cfg, train_set)``), the clip settings those
  datasets decode with (:func:`dataset_settings`: duration, frames, image size, sample rate,
  crop, normalisation) replace the config's, with a warning naming each one that differed.

:func:`with_overrides` is the reading side: the recorded data settings, with the few a user
may change at evaluation (``--duration``, ``--num-frames``, ``--image-size``) logged when
they differ from training.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from typing import Any, Mapping

from torch.utils.data import Dataset

from zorro.model_config import audio_sample_rate
from zorro.train.config import TrainConfig

__all__ = ["PATH_KEYS", "SETTING_KEYS", "absolute_paths", "check_sample_rates", "dataset_settings", "resolve_run_config",
           "with_overrides"]

logger = logging.getLogger("zorro.train")

#: (section, key) of every config value that is a path.
PATH_KEYS = (("model", "init_from"), ("data", "train_manifest"), ("data", "eval_manifest"), ("data", "train_shards"),
             ("data", "eval_shards"), ("data", "data_root"))

#: The ``data`` keys that shape each clip: a dataset object reports them (:func:`dataset_settings`).
SETTING_KEYS = ("duration", "num_frames", "image_size", "sample_rate", "train_crop", "crop_scale", "crop_ratio", "hflip_prob",
                "video_mean", "video_std")

#: The keys an evaluation may change (``zorro evaluate`` / ``zorro embed`` options).
OVERRIDABLE = ("duration", "num_frames", "image_size")


def absolute_paths(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` with every path of :data:`PATH_KEYS` made absolute (against the working
    directory); other values unchanged."""
    sections = {}
    for section, key in PATH_KEYS:
        value = getattr(getattr(cfg, section), key)
        if value:
            sections.setdefault(section, {})[key] = os.path.abspath(os.fspath(value))
    if not sections:
        return cfg
    return replace(cfg, **{name: replace(getattr(cfg, name), **values) for name, values in sections.items()})


def check_sample_rates(data_rate: int, model_rate: int, *, where: str = "data.sample_rate") -> None:
    """Refuse audio decoded at a rate other than the model's: its front-end would analyse it
    as if it were at ``model_rate`` (every frequency scaled, wrong mel bands).

    Raises:
        ValueError: naming both rates and how to make them agree.
    """
    if int(data_rate) != int(model_rate):
        raise ValueError(
            f"{where} is {int(data_rate)} Hz but the model's audio front-end is built for {int(model_rate)} Hz "
            f"(model.arch.sample_rate). Leave data.sample_rate out (null) to decode every file at the model's rate "
            f"(the decoder resamples), or build the model for {int(data_rate)} Hz"
        )


def _unwrap(dataset: Any) -> Any:
    """The dataset that decodes, below wrappers such as ``Subset`` and ``CachedClips`` (each
    holds its source as ``.dataset``)."""
    seen = 0
    while not _says_settings(dataset) and hasattr(dataset, "dataset") and seen < 16:
        dataset, seen = dataset.dataset, seen + 1
    return dataset


def _says_settings(dataset: Any) -> bool:
    return all(hasattr(dataset, name) for name in ("duration", "num_frames", "image_size", "sample_rate"))


def dataset_settings(dataset: Dataset | None, *, training: bool = True) -> dict[str, Any]:
    """The ``data`` settings a dataset decodes its clips with, as config values.

    Reads :class:`~zorro.data.ClipDataset` and :class:`~zorro.data.ShardDataset` attributes
    (through wrappers that keep their source as ``.dataset``); a shard folder's stored
    window, frame count and rate stand in where the dataset leaves them None. ``training``
    adds the training crop (``train_crop``, and the random-resized crop's parameters when
    it is random). Returns ``{}`` for a dataset that does not say (e.g. tensors in memory).
    """
    source = _unwrap(dataset)
    if not _says_settings(source):
        return {}
    stored = (getattr(source, "info", None) or {}).get("settings") or {}
    out: dict[str, Any] = {}
    for key, stored_key in (("duration", "duration"), ("num_frames", "num_frames"), ("image_size", "image_size"),
                            ("sample_rate", "sample_rate")):
        value = getattr(source, key)
        value = stored.get(stored_key) if value is None else value
        if value is not None:
            out[key] = float(value) if key == "duration" else int(value)
    if hasattr(source, "mean") and hasattr(source, "std"):
        out["video_mean"], out["video_std"] = [float(v) for v in source.mean], [float(v) for v in source.std]
    if training and hasattr(source, "train"):
        out["train_crop"] = "random" if source.train else "centre"
        if source.train:
            for key, attr in (("crop_scale", "scale"), ("crop_ratio", "ratio")):
                if hasattr(source, attr):
                    out[key] = [float(v) for v in getattr(source, attr)]
            if hasattr(source, "hflip_prob"):
                out["hflip_prob"] = float(source.hflip_prob)
    return out


def _differs(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) != len(b) or any(_differs(x, y) for x, y in zip(a, b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return abs(float(a) - float(b)) > 1e-9 * max(1.0, abs(float(a)))
    return a != b


def resolve_run_config(cfg: TrainConfig, *, arch: Mapping[str, Any], train_set: Dataset | None = None,
                       eval_set: Dataset | None = None) -> TrainConfig:
    """The config a run records (see the module docstring).

    Args:
        cfg: the config the run was given.
        arch: the built backbone's options (``model.config.to_dict()``).
        train_set, eval_set: the datasets the run reads; their clip settings win over the
            config's (warned about when they differ).

    Raises:
        ValueError: the audio is decoded at a rate other than the model's.
    """
    cfg = absolute_paths(cfg)
    given = dict(cfg.model.arch)
    if cfg.model.init_from and given != type(cfg.model)().arch:
        ignored = sorted(k for k, v in given.items() if k in arch and _differs(_plain(v), _plain(arch[k])))
        if ignored:
            logger.warning("model.arch %s differ from the model in model.init_from (%s), whose settings are used and recorded",
                           ignored, cfg.model.init_from)
    model = replace(cfg.model, arch=dict(arch))
    data = cfg.data
    found = dataset_settings(train_set)
    changed = {k: (getattr(data, k), v) for k, v in found.items() if _differs(getattr(data, k), v)}
    if changed:
        shown = ", ".join(f"data.{k}={new!r} (config: {old!r})" for k, (old, new) in changed.items() if old is not None)
        if shown:
            logger.warning("the training set decodes %s: the run records the training set's settings", shown)
        data = replace(data, **{k: new for k, (_, new) in changed.items()})
    eval_found = dataset_settings(eval_set, training=False) if eval_set is not None else {}
    differs = {k: v for k, v in eval_found.items() if _differs(getattr(data, k), v)}
    if differs:
        logger.warning("the evaluation set decodes %s, unlike the training set (%s)",
                       ", ".join(f"{k}={v!r}" for k, v in differs.items()), ", ".join(f"{k}={getattr(data, k)!r}" for k in differs))
    model_rate = int(audio_sample_rate(arch) or 16000)
    rate = model_rate if data.sample_rate is None else int(data.sample_rate)
    check_sample_rates(rate, model_rate)
    if cfg.data.sample_rate is None:
        logger.info("audio is decoded at %d Hz, the model's rate (files at other rates are resampled by the decoder)", rate)
    if "sample_rate" in eval_found:
        check_sample_rates(eval_found["sample_rate"], model_rate, where="the evaluation set's sample rate")
    return replace(cfg, model=model, data=replace(data, sample_rate=rate))


def _plain(value: Any) -> Any:
    """Config values compared as JSON would hold them (tuples as lists, enum members by name)."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    name = getattr(value, "name", None)
    return name if isinstance(name, str) and not isinstance(value, str) else value


def with_overrides(cfg: TrainConfig, **overrides: Any) -> TrainConfig:
    """A run's config with evaluation-time overrides of its data settings (``duration``,
    ``num_frames``, ``image_size``; None = as recorded), each logged when it differs from
    what the run trained with."""
    unknown = sorted(set(overrides) - set(OVERRIDABLE))
    if unknown:
        raise ValueError(f"only {list(OVERRIDABLE)} may be overridden at evaluation, got {unknown}")
    given = {k: v for k, v in overrides.items() if v is not None}
    for key, value in given.items():
        trained = getattr(cfg.data, key)
        if _differs(trained, value):
            logger.warning("using data.%s=%r; the run trained with %r", key, value, trained)
    return replace(cfg, data=replace(cfg.data, **given)) if given else cfg
