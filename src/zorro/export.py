"""Export the inference graph for deployment: ``torch.export`` programs and ONNX models.

The whole model is exported, *front-end included*: the waveform goes in, ``(b, r, D)``
pooled outputs come out. Both audio front-ends trace (``"fbank"`` uses ``unfold`` + ``rfft``
and ``"spectrogram"`` uses ``torch.stft``; the ONNX exporter lowers both to ONNX ``DFT``).

Input shapes are fixed except the batch, which is dynamic by default: the audio length
(samples) and the video ``(T, H, W)`` given at export time are baked in (the patch grid, the
crop to whole patches and the positional embeddings depend on them). Audio-only or
video-only graphs are exported by leaving the other input out.

Inputs and output of the exported graph (``b`` batch):

* ``audio``: ``(b, samples)`` float32 mono waveform at ``config.sample_rate`` Hz.
* ``video``: ``(b, C, T, H, W)`` float32 frames (normalised as for the model).
* output: ``(b, r, D)`` float32, one row per selected return token.

The model is exported in eval mode (SpecAugment off); its training flag is restored after.
``onnx``/``onnxscript`` (and ``onnxruntime`` for :func:`verify_onnx`) are the ``export`` extra.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from torch import nn

from zorro.hub import unwrap_model

logger = logging.getLogger(__name__)

__all__ = [
    "ZorroInferenceGraph",
    "example_inputs",
    "export_onnx",
    "export_program",
    "max_abs_error",
    "verify_onnx",
    "verify_program",
]


class ZorroInferenceGraph(nn.Module):
    """The inference graph that is exported: ``forward(audio=None, video=None) -> (b, r, D)``.

    Wraps a :class:`zorro.Zorro` with a fixed ``return_token_indices`` (None: every return
    token the given inputs can feed).
    """

    def __init__(self, model: nn.Module, return_token_indices: Sequence[int] | None = None) -> None:
        super().__init__()
        self.model = unwrap_model(model)
        self.return_token_indices = None if return_token_indices is None else tuple(return_token_indices)

    def forward(self, audio: torch.Tensor | None = None, video: torch.Tensor | None = None) -> torch.Tensor:
        """``audio (b, samples)`` and/or ``video (b, C, T, H, W)`` -> ``(b, r, D)``."""
        indices = self.return_token_indices
        if indices is None:  # the tokens these inputs feed (Zorro.forward would ask for all of them)
            indices = self.model.select_return_tokens(None, has_audio=audio is not None, has_video=video is not None)
        return self.model(audio=audio, video=video, return_token_indices=indices)


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def example_inputs(
    model: nn.Module,
    *,
    audio_samples: int | None = None,
    video_shape: Sequence[int] | None = None,
    batch: int = 1,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """Random float32 inputs of the export shapes (audio in [-0.5, 0.5], video standard normal).

    Args:
        model: the :class:`zorro.Zorro` (for ``video_channels`` and the device).
        audio_samples: waveform length in samples, or None for no audio input.
        video_shape: ``(T, H, W)`` frames, height, width, or None for no video input.
        batch: batch size ``b``.

    Returns:
        ``{"audio": (b, samples)}`` and/or ``{"video": (b, C, T, H, W)}``.
    """
    inner = unwrap_model(model)
    if audio_samples is None and video_shape is None:
        raise ValueError("give audio_samples and/or video_shape: the exported graph needs at least one input")
    if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
        raise ValueError(f"batch must be an int >= 1, got {batch!r}")
    device = next(inner.parameters()).device
    out: dict[str, torch.Tensor] = {}
    if audio_samples is not None:
        if not isinstance(audio_samples, int) or isinstance(audio_samples, bool) or audio_samples < 1:
            raise ValueError(f"audio_samples must be a positive int (samples), got {audio_samples!r}")
        out["audio"] = torch.rand(batch, audio_samples, generator=generator).sub_(0.5).to(device)
    if video_shape is not None:
        shape = tuple(video_shape)
        if len(shape) != 3 or not all(isinstance(s, int) and s > 0 for s in shape):
            raise ValueError(f"video_shape must be three positive ints (frames, height, width), got {video_shape!r}")
        channels = inner.config.video_channels
        out["video"] = torch.randn(batch, channels, *shape, generator=generator).to(device)
    return out


def _dynamic_shapes(inputs: dict[str, torch.Tensor], dynamic_batch: bool) -> dict[str, Any] | None:
    if not dynamic_batch:
        return None
    batch = torch.export.Dim("batch", min=1, max=65536)
    return {name: {0: batch} for name in inputs}


def _trace_inputs(model: nn.Module, audio_samples, video_shape, batch: int, dynamic_batch: bool) -> dict[str, torch.Tensor]:
    # A batch of 1 would be specialised by the tracer; trace a dynamic batch with 2 examples.
    trace_batch = max(batch, 2) if dynamic_batch else batch
    inputs = example_inputs(model, audio_samples=audio_samples, video_shape=video_shape, batch=trace_batch)
    with torch.no_grad():  # fail early, with the model's own error message, on bad shapes
        ZorroInferenceGraph(model)(**inputs)
    return inputs


def export_program(
    model: nn.Module,
    *,
    audio_samples: int | None = None,
    video_shape: Sequence[int] | None = None,
    batch: int = 1,
    dynamic_batch: bool = True,
    return_token_indices: Sequence[int] | None = None,
    decompose: bool = True,
) -> torch.export.ExportedProgram:
    """``torch.export`` the inference graph.

    Args:
        model: a :class:`zorro.Zorro` (wrappers are unwrapped; exported in eval mode).
        audio_samples: fixed waveform length (samples), or None for a video-only graph.
        video_shape: fixed ``(T, H, W)``, or None for an audio-only graph.
        batch: batch size of a static graph (ignored with ``dynamic_batch``).
        dynamic_batch: make the batch dimension symbolic (1..65536).
        return_token_indices: which return tokens the graph outputs (None: all it can feed).
        decompose: lower the program to core ATen ops (``run_decompositions({})``). This also
            inlines the front-end's ``torch.autocast(enabled=False)`` region, whose
            higher-order op ``torch.export.save``/``load`` cannot round-trip in torch 2.13.

    Returns:
        An ``ExportedProgram``; call ``program.module()(audio=..., video=...)`` ->
        ``(b, r, D)``. Save it with ``torch.export.save(program, "model.pt2")``.
    """
    inner = unwrap_model(model)
    with _eval_mode(inner):
        inputs = _trace_inputs(inner, audio_samples, video_shape, batch, dynamic_batch)
        graph = ZorroInferenceGraph(inner, return_token_indices).eval()
        program = torch.export.export(graph, (), inputs, dynamic_shapes=_dynamic_shapes(inputs, dynamic_batch))
    return program.run_decompositions({}) if decompose else program


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    audio_samples: int | None = None,
    video_shape: Sequence[int] | None = None,
    batch: int = 1,
    dynamic_batch: bool = True,
    return_token_indices: Sequence[int] | None = None,
    opset_version: int | None = None,
) -> Path:
    """Write the inference graph as an ONNX model (``torch.onnx.export(dynamo=True)``).

    Args:
        model: a :class:`zorro.Zorro` (exported in eval mode).
        path: output ``.onnx`` file. Models over 2 GB get an external-data file beside it.
        audio_samples, video_shape, batch, dynamic_batch, return_token_indices: as in
            :func:`export_program`. Graph inputs are named ``audio`` / ``video``, the output
            ``embeddings`` ``(b, r, D)``.
        opset_version: ONNX opset (default: the exporter's).

    Returns:
        ``path``. The model's ``metadata_props`` hold ``zorro_config`` (the JSON config) and
        ``zorro_inputs`` (input names and shapes, ``"batch"`` where dynamic).
    """
    try:
        import onnxscript  # noqa: F401  (the dynamo exporter needs it)
    except ImportError:
        raise ImportError("ONNX export needs the export extra: pip install 'zorro[export]' (onnx, onnxscript, onnxruntime)") from None
    inner = unwrap_model(model)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with _eval_mode(inner):
        inputs = _trace_inputs(inner, audio_samples, video_shape, batch, dynamic_batch)
        graph = ZorroInferenceGraph(inner, return_token_indices).eval()
        captured = io.StringIO()
        with contextlib.redirect_stdout(captured), warnings.catch_warnings():  # the exporter print()s progress
            # audio and video share the one batch Dim on purpose; the exporter remarks on it.
            warnings.filterwarnings("ignore", message=r".*axis name: batch will not be used.*")
            program = torch.onnx.export(
                graph, (), kwargs=inputs, dynamo=True, verbose=False, opset_version=opset_version,
                input_names=list(inputs), output_names=["embeddings"],
                dynamic_shapes=_dynamic_shapes(inputs, dynamic_batch),
            )
        for line in captured.getvalue().splitlines():
            logger.debug("torch.onnx: %s", line)
    shapes = {name: ["batch" if dynamic_batch else t.shape[0], *t.shape[1:]] for name, t in inputs.items()}
    program.model.metadata_props["zorro_config"] = json.dumps(inner.config.to_dict())
    program.model.metadata_props["zorro_inputs"] = json.dumps(shapes)
    program.save(str(out))
    logger.info("wrote ONNX model %s (inputs %s)", out, shapes)
    return out


def max_abs_error(a: torch.Tensor, b: Any) -> float:
    """``max |a - b|`` over all elements (``b`` may be a NumPy array); shapes must match."""
    b = torch.as_tensor(b)
    if tuple(a.shape) != tuple(b.shape):
        raise ValueError(f"outputs have different shapes: {tuple(a.shape)} vs {tuple(b.shape)}")
    return float((a.detach().double().cpu() - b.double()).abs().max()) if a.numel() else 0.0


def verify_program(program: torch.export.ExportedProgram, model: nn.Module, inputs: dict[str, torch.Tensor],
                   return_token_indices: Sequence[int] | None = None) -> float:
    """Max absolute difference between ``program`` and eager ``model`` on ``inputs``."""
    inner = unwrap_model(model)
    with _eval_mode(inner), torch.no_grad():
        expected = ZorroInferenceGraph(inner, return_token_indices)(**inputs)
        got = program.module()(**inputs)
    return max_abs_error(expected, got)


def verify_onnx(path: str | os.PathLike, model: nn.Module, inputs: dict[str, torch.Tensor],
                return_token_indices: Sequence[int] | None = None) -> float:
    """Run the ONNX model with onnxruntime (CPU) and return the max absolute difference to
    eager ``model`` on ``inputs`` (``{"audio": (b, samples), "video": (b, C, T, H, W)}``)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise ImportError("verify_onnx needs onnxruntime: pip install 'zorro[export]'") from None
    inner = unwrap_model(model)
    with _eval_mode(inner), torch.no_grad():
        expected = ZorroInferenceGraph(inner, return_token_indices)(**inputs)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    if sorted(names) != sorted(inputs):
        raise ValueError(f"the ONNX model takes inputs {names}, got {sorted(inputs)}")
    (got,) = session.run(None, {k: v.detach().cpu().numpy() for k, v in inputs.items()})
    return max_abs_error(expected, got)
