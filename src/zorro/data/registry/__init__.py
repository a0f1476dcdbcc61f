"""The datasets ``zorro`` knows by name, one module each.

A dataset module (``zorro/data/registry/<name>.py``) holds everything about one published
dataset: its annotation parser, the media name templates and template fields, the default
clip duration, sample rate and modalities, its splits or folds, its evaluation protocol and
headline metric, and the command-line arguments of ``zorro prepare <name>``. It ends with::

    SPEC = DatasetSpec(name="...", ...)

Every module of this package that defines ``SPEC`` is registered when the registry is first
used; :func:`register` adds a dataset defined elsewhere. The rest of zorro reads the registry
instead of naming datasets itself: ``zorro prepare <name>`` (one sub-command per dataset,
its ``--help`` showing the dataset's own defaults), ``zorro cv`` (the folds and the headline
metric), the protocol metrics (:func:`zorro.metrics.dataset_metrics`) and the ``--protocol``
choices. ``docs/recipes.md`` ("Adding a dataset") walks through adding one.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
from dataclasses import dataclass
from typing import Callable

from zorro.data.annotations.records import AnnotationReader

__all__ = ["Protocol", "DatasetSpec", "register", "get", "names", "specs", "METRIC_KINDS"]

#: the kinds of metrics a protocol can ask for (see :func:`zorro.metrics.dataset_metrics`)
METRIC_KINDS = ("multi_label", "single_label")
#: names a dataset cannot take (other ``zorro prepare`` sub-commands)
RESERVED = ("merge",)


@dataclass(frozen=True)
class Protocol:
    """How a dataset's papers evaluate a classifier.

    Attributes:
        metrics: ``"multi_label"`` (mAP, mAUC, d-prime over the classes the evaluation set
            can judge) or ``"single_label"`` (top-k accuracy, optionally one-vs-rest mAP).
        ks: the top-k accuracies reported (single label).
        with_map: also report one-vs-rest mAP (single label).
        headline: the metric a result is quoted by (``"mAP"``, ``"top1"``); ``zorro cv``
            reports its mean and standard deviation over the folds.
        folds: the predefined cross-validation folds (``None``: a fixed train/test split).
        fold_field: the sample-meta field holding the fold.
        summary: one line describing the protocol (shown in ``--help``).
    """

    metrics: str
    ks: tuple[int, ...] = (1,)
    with_map: bool = False
    headline: str = "top1"
    folds: tuple[int, ...] | None = None
    fold_field: str = "fold"
    summary: str = ""

    def __post_init__(self) -> None:
        if self.metrics not in METRIC_KINDS:
            raise ValueError(f"Protocol.metrics must be one of {METRIC_KINDS}, got {self.metrics!r}")
        if self.folds is not None and len(self.folds) < 2:
            raise ValueError(f"Protocol.folds needs at least two folds, got {self.folds!r}")


@dataclass(frozen=True)
class DatasetSpec:
    """Everything ``zorro`` needs to know about one dataset (see the module docstring).

    Attributes:
        name: the command and protocol name (``zorro prepare <name>``, ``--protocol <name>``).
        title: the dataset's usual name (``"AudioSet"``).
        summary: one line for ``zorro prepare --help``.
        description: a paragraph for ``zorro prepare <name> --help``.
        multi_label: a clip may carry several labels.
        templates: the default media name templates, tried in order.
        fields: the template fields the dataset fills.
        duration: the default stored window (s) of ``zorro prepare <name>``.
        protocol: the evaluation protocol.
        add_arguments: adds the dataset's own arguments (its annotation files, split, ...)
            to the ``zorro prepare <name>`` parser.
        open_reader: ``(args, on_error) -> AnnotationReader`` over the annotation files the
            arguments name.
        sample_rate: the default stored audio rate (Hz).
        video: store frames by default (False for audio-only datasets).
        clips: the ``--clips`` kinds offered (``("trimmed", "full")`` when downloads may be
            whole videos; ``()`` when the published files are the clips).
        splits: the split values the annotation uses (documentation; ``--split`` checks
            against the file itself).
        index_fields: sample-meta fields also stored in each shard index (e.g. the fold),
            so recipes select samples without reading them.
        class_ids: how the class ids are assigned (one line, for the docs and ``--help``).
    """

    name: str
    title: str
    summary: str
    description: str
    multi_label: bool
    templates: tuple[str, ...]
    fields: tuple[str, ...]
    duration: float
    protocol: Protocol
    add_arguments: Callable[[argparse.ArgumentParser], None]
    open_reader: Callable[[argparse.Namespace, str], AnnotationReader]
    sample_rate: int = 16000
    video: bool = True
    clips: tuple[str, ...] = ("trimmed", "full")
    splits: tuple[str, ...] = ()
    index_fields: tuple[str, ...] = ()
    class_ids: str = ""

    def __post_init__(self) -> None:
        if not self.name or not all(c.isalnum() or c in "-_" for c in self.name) or self.name in RESERVED:
            raise ValueError(f"dataset name must be letters, digits, '-' or '_' and not one of {RESERVED}, got {self.name!r}")
        if not self.templates:
            raise ValueError(f"dataset {self.name!r} needs at least one default name template")
        if not self.duration > 0:
            raise ValueError(f"dataset {self.name!r}: duration must be > 0 seconds, got {self.duration!r}")
        if self.protocol.folds is not None and self.protocol.fold_field not in self.index_fields:
            raise ValueError(f"dataset {self.name!r} has folds: put its fold field {self.protocol.fold_field!r} in index_fields")


_REGISTRY: dict[str, DatasetSpec] = {}
_LOADED = False


def register(spec: DatasetSpec) -> DatasetSpec:
    """Add a dataset (a name may be registered once). Returns ``spec``.

    Raises:
        TypeError: not a :class:`DatasetSpec`.
        ValueError: the name is taken by another dataset.
    """
    if not isinstance(spec, DatasetSpec):
        raise TypeError(f"register needs a DatasetSpec, got {type(spec).__name__}")
    old = _REGISTRY.get(spec.name)
    if old is not None and old is not spec:
        raise ValueError(f"a dataset named {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def _load_builtin() -> None:
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        spec = getattr(module, "SPEC", None)
        if isinstance(spec, DatasetSpec):
            register(spec)


def specs() -> list[DatasetSpec]:
    """Every registered dataset, by name."""
    _load_builtin()
    return [_REGISTRY[n] for n in sorted(_REGISTRY)]


def names() -> tuple[str, ...]:
    """The registered dataset names, sorted."""
    return tuple(s.name for s in specs())


def get(name: str) -> DatasetSpec:
    """The dataset called ``name``.

    Raises:
        ValueError: no such dataset (the message lists the registered ones).
    """
    _load_builtin()
    spec = _REGISTRY.get(name)
    if spec is None:
        raise ValueError(f"unknown dataset {name!r}; the registered datasets are {list(names())}")
    return spec
