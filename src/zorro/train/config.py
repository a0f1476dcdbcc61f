"""The training configuration: :class:`TrainConfig`, one small dataclass per section.

A config file (YAML) has the run's ``task`` at the top and five sections::

    task: supervised            # "pretrain" (contrastive, no labels) or "supervised"
    model:                      # the backbone and how it computes        -> ModelSection
      arch: {dim: 256, depth: 6}  # keyword arguments of zorro.Zorro (see zorro.ZorroConfig)
      init_from: null           # start from a from_pretrained folder or a run folder
      precision: auto           # auto | fp32 | bf16
      compile: false
      grad_checkpointing: false
    data:                       # what is read and how it is batched       -> DataSection
      train_manifest: train.csv
      eval_manifest: test.csv
      batch_size: 32
    optim:                      # optimiser and schedule                   -> OptimSection
      lr: 1.0e-3
      epochs: 10
    objective:                  # the loss, its heads and augmentation     -> ObjectiveSection
      label_smoothing: 0.1
    run:                        # the run folder and its bookkeeping       -> RunSection
      out_dir: runs/default
      seed: 0

Section names are ``model``, ``data``, ``optim``, ``objective`` and ``run``; every key of
every section is listed (with its default and unit) on the section's dataclass below. On
the command line ``--set section.key=value`` overrides one key (``--set optim.lr=3e-4``,
``--set model.arch.depth=4``). A key written without its section (the flat layout of
earlier versions, e.g. ``lr: 3e-4``) raises ``ValueError`` saying where it moved
(``'lr' moved to 'optim.lr'``); :func:`sectioned` converts a whole flat dict, for run
folders written by those versions.

Python code builds a config the same way, with a dict or a section object per section::

    TrainConfig(task="pretrain", optim={"lr": 2e-3}, run=RunSection(out_dir="runs/pre"))
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping

from zorro.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from zorro.model import ZorroConfig
from zorro.train.objectives import build_augment
from zorro.train.precision import PRECISIONS

__all__ = [
    "TASKS", "TRAIN_CROPS", "PRECISIONS", "SECTIONS", "TrainConfig", "ModelSection", "DataSection", "OptimSection", "ObjectiveSection",
    "RunSection", "sectioned",
]

TASKS = ("pretrain", "supervised")
TRAIN_CROPS = ("random", "centre")


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class _Section:
    """What every section shares: numbers written as YAML text are read as numbers, and
    :meth:`from_dict` names a key that belongs to another section."""

    name = ""  # the section's key in a config file

    def _coerce_numbers(self) -> None:
        for f in fields(self):  # YAML 1.1 reads "3e-4" as text: accept numbers written that way
            value = getattr(self, f.name)
            if f.type in ("float", "float | None") and isinstance(value, str):
                try:
                    setattr(self, f.name, float(value))
                except ValueError:
                    raise ValueError(f"{self.name}.{f.name} must be a number, got {value!r}") from None

    def _check_bools(self, *names: str) -> None:
        for n in names:
            if not isinstance(getattr(self, n), bool):
                raise TypeError(f"{self.name}.{n} must be true or false, got {getattr(self, n)!r}")

    def _check_positive_ints(self, *names: str) -> None:
        for n in names:
            value = getattr(self, n)
            if isinstance(value, bool) or int(value) != value or int(value) < 1:
                raise ValueError(f"{self.name}.{n} must be an integer >= 1, got {value!r}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]):
        """The section from a mapping of its keys; a key of another section, or an unknown
        key, raises ``ValueError`` naming where it belongs or the keys this section has."""
        if not isinstance(data, Mapping):
            raise TypeError(f"config section {cls.name!r} must be a mapping of keys, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(_misplaced_message(unknown, cls.name, known))
        for f in fields(cls):
            if f.name in data and not _has_type(data[f.name], f.type):
                value = data[f.name]
                raise TypeError(f"{cls.name}.{f.name} must be {_TYPE_WORDS.get(f.type, f.type)}, got {value!r} ({type(value).__name__})")
        return cls(**dict(data))


# What a config file may hold for each annotation of a section field (YAML 1.1 reads "3e-4"
# as text: a float field also takes text, which must parse as a number).
_TYPE_WORDS = {
    "bool": "true or false", "int": "an integer", "int | None": "an integer or null", "float": "a number",
    "float | None": "a number or null", "str": "a string", "str | None": "a string or null",
    "dict[str, Any]": "a mapping", "list[float]": "a list of numbers",
}


def _has_type(value: Any, annotation: str) -> bool:
    def one(kind: str) -> bool:
        if kind == "None":
            return value is None
        if kind == "bool":
            return isinstance(value, bool)
        if kind == "int":
            return isinstance(value, int) and not isinstance(value, bool)
        if kind == "float":  # text is parsed (or refused, naming the field) by _coerce_numbers
            return isinstance(value, (int, float, str)) and not isinstance(value, bool)
        if kind == "str":
            return isinstance(value, str)
        if kind.startswith("dict"):
            return isinstance(value, Mapping)
        if kind.startswith("list"):
            return isinstance(value, (list, tuple))
        return True  # an annotation this check does not know: the section checks it

    return any(one(kind.strip()) for kind in str(annotation).split("|"))


@dataclass
class ModelSection(_Section):
    """``model``: the backbone and how it computes."""

    name = "model"

    arch: dict[str, Any] = field(default_factory=lambda: {"dim": 256, "depth": 6})  # zorro.Zorro keyword arguments
    init_from: str | None = None  # backbone weights: a from_pretrained folder or a run folder
    precision: str = "auto"  # "bf16" autocast, "fp32", or "auto" (bf16 where the hardware runs it natively)
    compile: bool = False  # torch.compile the backbone
    grad_checkpointing: bool = False  # recompute each layer's activations in backward (less memory, ~1/3 more compute)

    def __post_init__(self) -> None:
        if not isinstance(self.arch, Mapping):
            raise TypeError(f"model.arch must be a mapping of zorro.Zorro keyword arguments, got {self.arch!r}")
        known = {f.name for f in fields(ZorroConfig)}
        unknown = sorted(set(self.arch) - known)
        if unknown:
            raise ValueError(f"unknown model.arch keys {unknown}; zorro.Zorro takes {sorted(known)}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"model.precision must be one of {PRECISIONS}, got {self.precision!r}")
        self._check_bools("compile", "grad_checkpointing")


@dataclass
class DataSection(_Section):
    """``data``: where clips come from, their geometry, decoding, and batching."""

    name = "data"

    train_manifest: str | None = None  # CSV/JSONL manifest (path,label[,start,end])
    eval_manifest: str | None = None  # evaluated at the end (and every run.eval_every epochs)
    train_shards: str | None = None  # prepared shard folder (`zorro prepare`) to train from
    eval_shards: str | None = None  # prepared shard folder to evaluate on
    data_root: str | None = None  # relative manifest paths are resolved against it
    multi_label: bool = False  # labels are sets (sigmoid BCE, mAP) instead of one class
    duration: float = 2.0  # clip length (s)
    num_frames: int = 8  # frames per clip
    image_size: int = 224  # square crop side (pixels)
    sample_rate: int | None = None  # audio rate (Hz) clips are decoded at; None: the model's (model.arch.sample_rate), which the run records
    train_crop: str = "random"  # training clips: "random" (random window offset, random-resized crop, flip) or "centre" (the evaluation's centred window and crop)
    crop_scale: list[float] = field(default_factory=lambda: [0.25, 1.0])  # random-resized crop: area range, fraction of the frame
    crop_ratio: list[float] = field(default_factory=lambda: [3.0 / 4.0, 4.0 / 3.0])  # random-resized crop: aspect-ratio range
    hflip_prob: float = 0.5  # random-resized crop: probability of a horizontal flip
    video_mean: list[float] = field(default_factory=lambda: list(IMAGENET_MEAN))  # per-channel RGB mean subtracted from frames in [0, 1]
    video_std: list[float] = field(default_factory=lambda: list(IMAGENET_STD))  # per-channel RGB std frames are divided by
    eval_clips: int = 1  # evenly spaced clips per file at evaluation
    decoder: str = "pyav"  # "pyav", "torchcodec" or "auto"
    seek_mode: str = "exact"  # "exact" frames, or "keyframe" (approximate, much faster on long files)
    fast_decode: bool = False  # skip h264 deblocking (small pixel error, faster)
    decode_time_limit: float | None = 60.0  # s one clip may spend decoding; past it the clip is skipped and counted (None: no limit)
    text_max_length: int | None = None  # longest text modality input in byte-tokenizer ids, bos and eos included (longer texts are cut); None: no limit
    cache_decoded: bool = False  # decode every clip once and keep it in memory (small data)
    num_workers: int = 2  # DataLoader worker processes
    batch_size: int = 32  # clips per process, per micro-batch
    eval_batch_size: int = 64  # clips per evaluation batch
    balanced_sampling: bool = False  # draw training clips with weight sum 1/(label count + 0.01), with replacement (AudioSet; zorro.data.balanced)
    samples_per_epoch: int | None = None  # draws per epoch with balanced_sampling (None: the training set size)
    eval_protocol: str | None = None  # also report a dataset's metrics: audioset, vggsound, kinetics-sounds, esc50 (zorro.protocols)

    def __post_init__(self) -> None:
        self._coerce_numbers()
        self._check_positive_ints("batch_size", "num_frames", "image_size", "eval_batch_size")
        self._check_bools("balanced_sampling")
        if self.samples_per_epoch is not None:
            self._check_positive_ints("samples_per_epoch")
            if not self.balanced_sampling:
                raise ValueError("data.samples_per_epoch applies to balanced sampling: set data.balanced_sampling: true, or leave it null")
        if self.eval_protocol is not None:
            from zorro.metrics import PROTOCOLS

            if self.eval_protocol not in PROTOCOLS:
                raise ValueError(f"data.eval_protocol must be one of {PROTOCOLS} or null, got {self.eval_protocol!r}")
        if not self.duration > 0:
            raise ValueError(f"data.duration must be > 0 (seconds), got {self.duration!r}")
        if self.sample_rate is not None:
            self._check_positive_ints("sample_rate")
        if self.text_max_length is not None and (isinstance(self.text_max_length, bool) or not isinstance(self.text_max_length, int)
                                                 or self.text_max_length < 3):
            raise ValueError(f"data.text_max_length must be an int >= 3 (room for bos and eos) or null, got {self.text_max_length!r}")
        if self.train_crop == "center":  # the spelling zorro prepare's window also accepts
            self.train_crop = "centre"
        if self.train_crop not in TRAIN_CROPS:
            raise ValueError(f"data.train_crop must be one of {TRAIN_CROPS}, got {self.train_crop!r}")
        for name, size in (("crop_scale", 2), ("crop_ratio", 2), ("video_mean", 3), ("video_std", 3)):
            value = getattr(self, name)
            if not isinstance(value, (list, tuple)) or len(value) != size or not all(_is_real(v) for v in value):
                raise ValueError(f"data.{name} must be a list of {size} numbers, got {value!r}")
            setattr(self, name, [float(v) for v in value])
        if not all(v > 0 for v in self.video_std):
            raise ValueError(f"data.video_std must be > 0 for every channel, got {self.video_std}")
        if not 0.0 <= self.hflip_prob <= 1.0:
            raise ValueError(f"data.hflip_prob must be in [0, 1], got {self.hflip_prob!r}")


@dataclass
class OptimSection(_Section):
    """``optim``: AdamW, the learning-rate schedule, clipping and accumulation."""

    name = "optim"

    epochs: int = 10
    max_steps: int | None = None  # stop after this many optimiser steps (None: epochs)
    lr: float = 1e-3  # peak learning rate
    weight_decay: float = 0.05  # AdamW decay on matrices (none on norms, biases, tokens)
    warmup_steps: int = 100  # linear warm-up (optimiser steps)
    min_lr_ratio: float = 0.01  # cosine floor as a fraction of lr
    grad_clip: float = 1.0  # max global gradient norm (0 = off)
    accum_steps: int = 1  # micro-batches per optimiser step

    def __post_init__(self) -> None:
        self._coerce_numbers()
        self._check_positive_ints("epochs", "accum_steps")
        if not self.lr > 0:
            raise ValueError(f"optim.lr must be > 0, got {self.lr!r}")


@dataclass
class ObjectiveSection(_Section):
    """``objective``: the loss of either task, its heads, and augmentation."""

    name = "objective"

    label_smoothing: float = 0.1  # supervised
    mixup_alpha: float = 0.0  # supervised; 0 = off
    proj_dim: int = 128  # contrastive projection width
    temperature: float | None = None  # fixed InfoNCE temperature (None: learned, clamped)
    proj_batch_norm: bool = True  # standardise outputs over the global batch before projecting
    fusion_weight: float = 1.0  # weight of the o_F term of the contrastive loss
    global_weight: float = 1.0  # weight of the o_G term of the contrastive loss
    intra_weight: float = 0.0  # weight of the two-view audio-audio and video-video terms (0 = one view)
    cross_view: bool = False  # two views; the audio-video term averages all four view pairings
    augment: dict[str, Any] = field(default_factory=dict)  # ClipAugment options: pre-training's two views; supervised: off when empty

    def __post_init__(self) -> None:
        self._coerce_numbers()
        self._check_bools("cross_view")
        if not isinstance(self.augment, Mapping):
            raise TypeError(f"objective.augment must be a mapping of ClipAugment options, got {self.augment!r}")
        build_augment(self.augment)  # unknown or bad options fail here, not at the first batch


@dataclass
class RunSection(_Section):
    """``run``: the run folder, seeding, checkpoints, logs and evaluation cadence."""

    name = "run"

    out_dir: str = "runs/default"
    seed: int = 0
    ckpt_every: int = 0  # optimiser steps between checkpoints (0 = end of each epoch only)
    keep_checkpoints: int = 2
    log_every: int = 10  # optimiser steps between log lines
    eval_every: int = 0  # epochs between evaluations (0 = at the end only)
    resume: bool = True  # continue from the run folder's latest checkpoint
    progress: bool = True  # progress on rank 0: a bar on a terminal, periodic log lines otherwise
    tensorboard: bool = True  # TensorBoard event files in OUT/tensorboard beside log.jsonl

    def __post_init__(self) -> None:
        self._check_bools("resume", "progress", "tensorboard")


_SECTION_TYPES: dict[str, type[_Section]] = {
    cls.name: cls for cls in (ModelSection, DataSection, OptimSection, ObjectiveSection, RunSection)
}
SECTIONS = tuple(_SECTION_TYPES)

#: ``key -> "section.key"`` for every key of every section (where a flat key moved to).
_HOME = {f.name: f"{name}.{f.name}" for name, cls in _SECTION_TYPES.items() for f in fields(cls)}
if len(_HOME) != sum(len(fields(cls)) for cls in _SECTION_TYPES.values()):  # a key in two sections
    raise RuntimeError("two training config sections share a key name; flat keys could not be placed")


def _misplaced_message(keys: list[str], where: str, known: set[str]) -> str:
    """``ValueError`` text for ``keys`` found at ``where`` ("" = top level) that are not there."""
    prefix = f"{where}." if where else ""
    moves, unknown = [], []
    for key in keys:
        if key in _HOME:
            moves.append(f"'{prefix}{key}' moved to '{_HOME[key]}'")
        elif where == "model" and key in {f.name for f in fields(ZorroConfig)}:
            moves.append(f"'model.{key}' moved to 'model.arch.{key}'")
        else:
            unknown.append(key)
    parts = []
    if moves:
        parts.append("; ".join(moves) + " (the training config is sectioned: see zorro.train.config)")
    if unknown:
        parts.append(f"unknown training config keys {[prefix + k for k in unknown]}; known {where or 'top-level'} keys: {sorted(known)}")
    return "; ".join(parts)


@dataclass
class TrainConfig:
    """Everything a run needs; saved (resolved) as ``config.json`` in the run folder.

    ``model``, ``data``, ``optim``, ``objective`` and ``run`` take a section object or a
    mapping of that section's keys (see the module docstring)."""

    task: str = "supervised"  # "pretrain" (contrastive, no labels) or "supervised"
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    optim: OptimSection = field(default_factory=OptimSection)
    objective: ObjectiveSection = field(default_factory=ObjectiveSection)
    run: RunSection = field(default_factory=RunSection)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        for name, cls in _SECTION_TYPES.items():
            value = getattr(self, name)
            if isinstance(value, Mapping):
                setattr(self, name, cls.from_dict(value))
            elif not isinstance(value, cls):
                raise TypeError(f"{name} must be a mapping of its keys or a {cls.__name__}, got {type(value).__name__}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TrainConfig":
        """Build from a nested dict (e.g. parsed YAML). A key outside its section raises
        ``ValueError`` naming the section it belongs in; unknown keys raise ``ValueError``."""
        if not isinstance(data, Mapping):
            raise TypeError(f"a training config must be a mapping, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        misplaced = sorted(set(data) - known)
        if misplaced:
            raise ValueError(_misplaced_message(misplaced, "", known))
        return cls(**dict(data))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready nested dict (the layout :meth:`from_dict` reads)."""
        return asdict(self)


def sectioned(flat: Mapping[str, Any]) -> dict[str, Any]:
    """A flat config dict (the layout of earlier versions: every key at the top, Zorro
    settings in ``model``) rewritten into sections; keys already sectioned are kept.

    For reading ``config.json`` of run folders written before sections existed; unknown
    keys are kept at the top level, so :meth:`TrainConfig.from_dict` still reports them."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        if key == "model" and isinstance(value, Mapping) and not (set(value) & {f.name for f in fields(ModelSection)}):
            out.setdefault("model", {})["arch"] = dict(value)
        elif key in _SECTION_TYPES or key == "task" or key not in _HOME:
            if key in _SECTION_TYPES and isinstance(value, Mapping):
                out.setdefault(key, {}).update(value)
            else:
                out[key] = value
        else:
            section, name = _HOME[key].split(".")
            out.setdefault(section, {})[name] = value
    return out
