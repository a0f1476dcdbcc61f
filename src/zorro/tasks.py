"""Zorro with training heads attached: what the trainer optimises and the evaluator runs.

* :class:`ZorroPretrainer` -- the backbone plus a :class:`~zorro.heads.ContrastiveHead`; its
  forward returns the named embeddings and their L2-normalised projections.
* :class:`ZorroClassifier` -- the backbone plus one classifier per output
  (:class:`~zorro.heads.ClassifierHeads`); its forward returns logits per output.

Both accept either or both modalities; outputs that need a missing modality are absent
from the returned dicts.
"""

from __future__ import annotations

import torch
from torch import nn

from zorro.heads import ClassifierHeads, ContrastiveHead
from zorro.model import Zorro


def output_names(model: Zorro) -> tuple[str, ...]:
    """Names of the model's outputs (``audio``, ``video``, ``fusion``, ``global``) in config order."""
    return tuple(t.name.lower() for t in model.return_token_types)


class ZorroPretrainer(nn.Module):
    """Backbone + contrastive projections.

    Args:
        backbone: a :class:`~zorro.model.Zorro` whose return tokens include AUDIO and VIDEO.
        proj_dim: width of the unimodal projections (fusion/global get ``2 * proj_dim``).
        temperature: fixed InfoNCE temperature, or None for a learnable, clamped one.
        batch_norm: standardise the outputs over the global batch before projecting them
            (:class:`~zorro.heads.BatchStandardize`).
    """

    def __init__(self, backbone: Zorro, proj_dim: int = 128, temperature: float | None = None, *, batch_norm: bool = True) -> None:
        super().__init__()
        names = output_names(backbone)
        if "audio" not in names or "video" not in names:
            raise ValueError(f"contrastive pre-training needs AUDIO and VIDEO return tokens; the model has {names}")
        self.backbone = backbone
        self.head = ContrastiveHead(backbone.config.dim, proj_dim, names=names, fixed_temperature=temperature, batch_norm=batch_norm)

    def forward(
        self, *, audio: torch.Tensor | None = None, video: torch.Tensor | None = None, audio_features: torch.Tensor | None = None,
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Returns ``(embeddings, projections)``: dicts name -> ``(b, D)`` and name -> ``(b, P)``.

        ``audio_features`` (raw front-end features ``(b, F, T)``) may replace ``audio``.
        """
        embeddings = self.backbone.encode(audio=audio, video=video, audio_features=audio_features).embeddings
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

    def forward(
        self, *, audio: torch.Tensor | None = None, video: torch.Tensor | None = None, audio_features: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Logits per output name, each ``(b, C)``; ``audio_features`` (raw front-end
        features ``(b, F, T)``) may replace ``audio``."""
        return self.heads(self.backbone.encode(audio=audio, video=video, audio_features=audio_features).embeddings)
