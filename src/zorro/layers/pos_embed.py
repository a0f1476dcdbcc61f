"""Fixed sine-cosine positional embeddings for token grids of any size.

Why sine-cosine: a fixed function of the patch coordinates has no table tied to one input
length, so the same model embeds 1 s or 60 s of audio and 8 or 32 frames at any resolution
without interpolating learned weights (the resizing problem AST users meet). Each grid
axis gets its own band of channels, so the embedding is separable over (freq, time) for
audio and (time, row, column) for video, as in MAE / CAV-MAE's 2-D sine-cosine tables.
"""

from __future__ import annotations

import torch


def sincos_1d(positions: torch.Tensor, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """Sine-cosine features of ``positions (n,)`` -> ``(n, dim)``; ``dim`` must be even.

    Channel ``2i`` is ``sin(p / temperature^(2i/dim))`` and ``2i+1`` the matching cosine.
    """
    if dim % 2:
        raise ValueError(f"sincos_1d needs an even dim, got {dim}")
    freqs = temperature ** (-torch.arange(0, dim, 2, dtype=torch.float32, device=positions.device) / dim)
    angles = positions.to(torch.float32)[:, None] * freqs[None, :]  # (n, dim/2)
    return torch.stack([angles.sin(), angles.cos()], dim=-1).reshape(len(positions), dim)


def sincos_grid(grid: tuple[int, ...], dim: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Separable sine-cosine embedding of a token grid.

    Args:
        grid: sizes of each axis, e.g. ``(freq_patches, time_patches)`` or ``(T, H, W)``.
        dim: embedding width. Each axis gets an even share of the channels; channels left
            over (when ``dim`` is not a multiple of ``2 * len(grid)``) are zero.
        device: where to build it.

    Returns:
        ``(prod(grid), dim)`` float32, rows in the grid's row-major (C) order -- the order
        in which the patch embeddings emit tokens.
    """
    per_axis = (dim // (2 * len(grid))) * 2
    if per_axis == 0:
        raise ValueError(f"dim={dim} is too small for a {len(grid)}-axis sine-cosine embedding")
    coords = torch.meshgrid(*[torch.arange(s, device=device) for s in grid], indexing="ij")
    parts = [sincos_1d(c.reshape(-1), per_axis) for c in coords]
    used = per_axis * len(grid)
    if used < dim:
        parts.append(torch.zeros(parts[0].shape[0], dim - used, device=device))
    return torch.cat(parts, dim=-1)
