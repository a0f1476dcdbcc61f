"""Zorro with training heads attached: what the trainer optimises and the evaluator runs.

* :class:`ZorroPretrainer` -- the backbone plus a :class:`~zorro.heads.ContrastiveHead`; its
  forward returns the named embeddings and their L2-normalised projections.
* :class:`ZorroClassifier` -- the backbone plus one classifier per output
  (:class:`~zorro.heads.ClassifierHeads`); its forward returns logits per output.

Both take any non-empty subset of the backbone's modalities by name (``audio=``, ``video=``,
``text=`` ...); outputs that need a missing modality are absent from the returned dicts.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from zorro.heads import ClassifierHeads, ContrastiveHead
from zorro.model import Zorro


def output_names(model: Zorro) -> tuple[str, ...]:
    """Names of the model's outputs (``audio``, ``video``, ``fusion``, ``global``, or any
    modality's) in config order."""
    return tuple(model.return_token_names)


class ZorroPretrainer(nn.Module):
    """Backbone + contrastive projections.

    Args:
        backbone: a :class:`~zorro.model.Zorro` with a return token for at least two of its
            modalities (AUDIO and VIDEO for the audio-video model).
        proj_dim: width of the unimodal projections (fusion/global get ``M * proj_dim`` for
            ``M`` modalities).
        temperature: fixed InfoNCE temperature, or None for a learnable, clamped one.
        batch_norm: standardise the outputs over the global batch before projecting them
            (:class:`~zorro.heads.BatchStandardize`).
    """

    def __init__(self, backbone: Zorro, proj_dim: int = 128, temperature: float | None = None, *, batch_norm: bool = True) -> None:
        super().__init__()
        names = output_names(backbone)
        modalities = tuple(m for m in backbone.modality_names if m in names)
        if len(modalities) < 2:
            raise ValueError(
                f"contrastive pre-training needs a return token for at least two modalities (AUDIO and VIDEO for the "
                f"audio-video model); the model's modalities are {list(backbone.modality_names)} and its outputs {list(names)}"
            )
        self.backbone = backbone
        #: the modalities contrasted with each other, in the backbone's table order
        self.modalities = modalities
        self.head = ContrastiveHead(backbone.config.dim, proj_dim, names=names, fixed_temperature=temperature, batch_norm=batch_norm,
                                    num_modalities=len(modalities))

    def forward(self, **inputs: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Returns ``(embeddings, projections)``: dicts name -> ``(b, D)`` and name -> ``(b, P)``.

        ``inputs`` as for :meth:`zorro.Zorro.encode` (``audio_features``, raw front-end
        features ``(b, F, T)``, may replace ``audio``).
        """
        embeddings = self.backbone.encode(**_given(inputs)).embeddings
        return embeddings, self.head(embeddings)


class ZorroClassifier(nn.Module):
    """Backbone + one ``LayerNorm + Linear`` classifier per output.

    Args:
        backbone: a :class:`~zorro.model.Zorro`.
        num_classes: number of classes ``C``.
        names: the outputs to classify (default: every output of the backbone).
    """

    def __init__(self, backbone: Zorro, num_classes: int, *, names: Sequence[str] | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.heads = ClassifierHeads(backbone.config.dim, num_classes, names=output_names(backbone) if names is None else tuple(names))
        self.labels: list[str] | None = None  # class names, in class-id order (set by from_run)
        self.run_config: dict[str, Any] | None = None  # the run's config.json (set by from_run)

    @classmethod
    def from_run(cls, run_dir: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> "ZorroClassifier":
        """The classifier a supervised run folder (``zorro train``) holds, in eval mode.

        The backbone comes from ``RUN/model``, the heads from ``RUN/heads.safetensors`` (one
        per output that was trained: a run whose data never fed an output has no head for it),
        ``labels`` (class names, class-id order) from ``RUN/labels.json`` and ``run_config``
        from ``RUN/config.json``. The clip settings to feed it are that config's ``data``
        section (:meth:`clip_settings`); ``zorro.train.run_dataset`` builds datasets with them.

        Raises:
            FileNotFoundError: a file of the run folder is missing (e.g. a pre-training run,
                which has no heads).
        """
        from safetensors.torch import load_file

        folder = Path(run_dir)
        for name in ("config.json", "labels.json", "heads.safetensors", "model"):
            if not (folder / name).exists():
                raise FileNotFoundError(f"{folder} is not a supervised run folder: {name} is missing (train one with `zorro train`)")
        labels = json.loads((folder / "labels.json").read_text(encoding="utf-8"))["labels"]
        state = load_file(str(folder / "heads.safetensors"), device=str(map_location))
        backbone = Zorro.from_pretrained(str(folder / "model"), device=map_location)
        trained = {key.split(".")[1] for key in state if key.startswith("heads.")}
        names = [n for n in output_names(backbone) if n in trained]
        if not names:
            raise ValueError(f"{folder / 'heads.safetensors'} holds no classifier head of the model's outputs {output_names(backbone)}")
        model = cls(backbone, len(labels), names=names)
        model.heads.load_state_dict(state, strict=True)
        model.labels = [str(n) for n in labels]
        model.run_config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        return model.eval()

    def clip_settings(self) -> dict[str, Any]:
        """What :func:`zorro.data.read_clip` needs to read clips as the run trained on them:
        ``duration`` (s), ``num_frames``, ``image_size`` (pixels) and ``sample_rate`` (Hz), from
        the run's config (:meth:`from_run`); the model's rate where the run left it unset.
        Frames are then normalised with the run's ``data.video_mean`` / ``data.video_std``."""
        if self.run_config is None:
            raise ValueError("clip_settings needs a classifier loaded with ZorroClassifier.from_run")
        data = self.run_config.get("data", self.run_config)  # runs written before sections: flat
        out = {"duration": float(data.get("duration", 2.0)), "num_frames": int(data.get("num_frames", 8)),
               "image_size": int(data.get("image_size", 224))}
        out["sample_rate"] = int(data.get("sample_rate") or self.backbone.config.audio_sample_rate)
        return out

    def forward(self, **inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits per output name, each ``(b, C)``; ``inputs`` as for :meth:`zorro.Zorro.encode`
        (``audio_features``, raw front-end features ``(b, F, T)``, may replace ``audio``)."""
        return self.heads(self.backbone.encode(**_given(inputs)).embeddings)


def _given(inputs: dict[str, torch.Tensor | None]) -> dict[str, torch.Tensor]:
    """The inputs that are not None (callers pass ``audio=None`` for an absent modality)."""
    return {k: v for k, v in inputs.items() if v is not None}
