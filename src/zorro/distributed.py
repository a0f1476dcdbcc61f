"""Small ``torch.distributed`` helpers shared by the objectives and the heads.

Only what the loss functions need to see the global batch: the process group's rank and
size, and an all-gather that keeps gradients. Setting up and tearing down the process group
is the trainer's business (:mod:`zorro.train`).
"""

from __future__ import annotations

import torch

__all__ = ["world", "gather_with_grad"]


def world() -> tuple[int, int]:
    """``(rank, world_size)`` of the default process group; ``(0, 1)`` when not distributed."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class _AllGatherWithGrad(torch.autograd.Function):
    """All-gather along dim 0 whose backward routes each rank's share of the gradient home.

    Forward: ``(B, ...)`` on every rank -> ``(W * B, ...)``, rank ``r``'s rows at
    ``[r*B, (r+1)*B)``. Backward: the gradients of the gathered tensor are summed over ranks
    (every rank's loss depends on every rank's rows) and rank ``r`` keeps its own slice. This
    is what ``torch.distributed.nn.functional.all_gather`` does (deprecated since torch
    2.10); ``all_reduce`` is used because every backend, gloo included, supports it.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        size = torch.distributed.get_world_size()
        ctx.rank, ctx.batch = torch.distributed.get_rank(), x.shape[0]
        x = x.contiguous()
        chunks = [torch.empty_like(x) for _ in range(size)]
        torch.distributed.all_gather(chunks, x)
        return torch.cat(chunks, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        grad = grad.contiguous().clone()
        torch.distributed.all_reduce(grad, op=torch.distributed.ReduceOp.SUM)
        return grad[ctx.rank * ctx.batch : (ctx.rank + 1) * ctx.batch]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` (``(B, ...)``, same shape on every rank) from all ranks along dim 0.

    Returns ``(W * B, ...)``; gradients flow back to each rank's own rows. A tensor that does
    not require grad (e.g. a detached target) is gathered without autograd. Without a process
    group, ``x`` itself is returned.
    """
    if world()[1] == 1:
        return x
    if not x.requires_grad:
        chunks = [torch.empty_like(x) for _ in range(torch.distributed.get_world_size())]
        torch.distributed.all_gather(chunks, x.contiguous())
        return torch.cat(chunks, dim=0)
    return _AllGatherWithGrad.apply(x)
