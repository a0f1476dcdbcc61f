"""Zorro with training heads attached: what the trainer optimises and the evaluator runs.

* :class:`ZorroPretrainer` -- the backbone plus a :class:`~zorro.heads.ContrastiveHead`; its
  forward returns the named embeddings and their L2-normalised projections.
* :class:`ZorroClassifier` -- the backbone plus one classifier per output
  (:class:`~zorro.heads.ClassifierHeads`); its forward returns logits per output.

Both take any non-empty subset of the backbone's modalities by name (``audio=``, ``video=``,
``text=`` ...); outputs that need a missing modality are absent from the returned dicts.
"""

from __future__ import annotations

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
    """

    def __init__(self, backbone: Zorro, num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.heads = ClassifierHeads(backbone.config.dim, num_classes, names=output_names(backbone))

    def forward(self, **inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits per output name, each ``(b, C)``; ``inputs`` as for :meth:`zorro.Zorro.encode`
        (``audio_features``, raw front-end features ``(b, F, T)``, may replace ``audio``)."""
        return self.heads(self.backbone.encode(**_given(inputs)).embeddings)


def _given(inputs: dict[str, torch.Tensor | None]) -> dict[str, torch.Tensor]:
    """The inputs that are not None (callers pass ``audio=None`` for an absent modality)."""
    return {k: v for k, v in inputs.items() if v is not None}
