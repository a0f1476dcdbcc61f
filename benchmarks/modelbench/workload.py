"""What the model benchmark measures: the workloads (sizes, model, the demo configuration)
and their analytic cost (token layout, useful FLOPs, predicted peak memory)."""

from __future__ import annotations

from typing import Any

GIB = 1024**3

#: n (nominal) -> (audio seconds, video frames); video is always 224x224, batch 2.
SIZES: dict[int, tuple[float, int]] = {
    600: (0.6, 4),
    1200: (1.2, 8),
    2248: (2.0, 16),
    4500: (4.0, 32),
    8000: (7.4, 56),
}
MAIN_N = 2248
BATCH = 2
VIDEO_HW = 224
SAMPLE_RATE = 16000
#: The seed-compatible model of the issue; SpecAugment off so train mode is the same function.
MODEL_KW: dict[str, Any] = dict(
    dim=512, depth=4, heads=8, dim_head=64, num_fusion_tokens=16,
    spec_aug_freq_mask=0, spec_aug_time_mask=0, spec_aug_stretch_factor=1.0,
)
def _demo_default() -> dict[str, Any]:
    """The AV-digits demo's model and input geometry (read from the recipe, so they match)."""
    from zorro.recipes.avdigits_demo import DEMO_SETTINGS

    data = DEMO_SETTINGS["data"]
    return dict(
        DEMO_SETTINGS["model"],
        batch=DEMO_SETTINGS["finetune"]["data"]["batch_size"], audio_seconds=data["duration"],
        frames=data["num_frames"], size=data["image_size"],
    )


#: The demo configuration. Keys ``batch``, ``audio_seconds``, ``frames``, ``size`` describe
#: the inputs; all others go to ``Zorro``.
DEMO_DEFAULT: dict[str, Any] = _demo_default()
DEMO_INPUT_KEYS = ("batch", "audio_seconds", "frames", "size")


def layout_for(n_nominal: int) -> dict[str, int]:
    """Token counts of the benchmark input of nominal size ``n_nominal``.

    Seed front-end: ``n_fft=128`` gives 65 frequency bins (4 patch rows of 16); hop 12
    samples with centring gives ``samples // 12 + 1`` frames.
    """
    seconds, frames = SIZES[n_nominal]
    samples = int(round(seconds * SAMPLE_RATE))
    spec_frames = samples // 12 + 1
    n_a = (65 // 16) * (spec_frames // 16)
    n_v = (frames // 2) * (VIDEO_HW // 16) ** 2
    n_f = MODEL_KW["num_fusion_tokens"]
    return dict(n_a=n_a, n_f=n_f, n_v=n_v, n=n_a + n_f + n_v, samples=samples, frames=frames)


def allowed_pairs(n_a: int, n_f: int, n_v: int) -> int:
    """Query-key pairs the Zorro mask allows per layer and head: ``n_a^2 + n_v^2 + n_f * n``."""
    return n_a * n_a + n_v * n_v + n_f * (n_a + n_f + n_v)


def forward_flops(
    n_a: int, n_f: int, n_v: int, *, batch: int, dim: int, depth: int, heads: int, dim_head: int,
    ff_mult: float = 4, returns: int = 3, audio_patch: int = 256, video_patch: int = 1536,
) -> dict[str, float]:
    """Useful FLOPs of one forward pass (multiply-add = 2 FLOPs), by part.

    * patch embeddings: ``2 * b * (n_a * P_a + n_v * P_v) * D``
    * per layer, linear: ``2 * b * n * (D * 3Hd + Hd * D + D * 2I + I * D)`` with
      ``I = int(D * ff_mult * 2 / 3)`` (q/k/v, out, GEGLU in, GEGLU out)
    * per layer, attention: ``4 * b * H * d * (n_a^2 + n_v^2 + n_f * n)`` (``QK^T`` and ``PV``
      over the allowed blocks only)
    * pooling: ``2 * b * n * D * 2Hd`` (k/v of every token) + ``2 * b * r * (D*Hd + Hd*D)``
      + attention over at most every token, ``4 * b * H * d * r * n``
    """
    n = n_a + n_f + n_v
    hd = heads * dim_head
    inner = int(dim * ff_mult * 2 / 3)
    embed = 2.0 * batch * (n_a * audio_patch + n_v * video_patch) * dim
    linear = depth * 2.0 * batch * n * (dim * 3 * hd + hd * dim + dim * 2 * inner + inner * dim)
    attention = depth * 4.0 * batch * heads * dim_head * allowed_pairs(n_a, n_f, n_v)
    pool = 2.0 * batch * n * dim * 2 * hd + 2.0 * batch * returns * 2 * dim * hd + 4.0 * batch * heads * dim_head * returns * n
    return dict(embed=embed, linear=linear, attention=attention, pool=pool, total=embed + linear + attention + pool)


def dense_score_bytes(n: int, precision: str) -> float:
    """Bytes of one dense ``(b, h, n, n)`` score tensor of the reference."""
    return BATCH * MODEL_KW["heads"] * n * n * (4 if precision == "fp32" else 2)


def predict_peak_gib(model: str, n: int, precision: str, mode: str) -> float:
    """Rough peak-memory prediction (GiB), used only to skip runs that cannot fit.

    Dense: ~3 score tensors live at once in a forward layer (scores, masked, softmax); a
    training step keeps one per layer (softmax output) plus ~3 transients in backward.
    Ours: activations grow linearly in ``n``; a generous linear bound.
    """
    base = 1.0
    if model == "dense":
        s = dense_score_bytes(n, precision) / GIB
        return base + (3 * s if mode == "forward" else MODEL_KW["depth"] * s + 3 * s)
    return base + n / 8000 * (1.0 if mode == "forward" else 4.0)
