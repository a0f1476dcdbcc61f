"""Deployment export: torch.export programs and ONNX models match eager PyTorch."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from conftest import tiny_kwargs
from zorro import Zorro
from zorro.cli import main as cli_main
from zorro.export import example_inputs, export_onnx, export_program, verify_onnx, verify_program

TOL = 1e-4


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="audio features of shape")
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", message="No complete tensor found")
        yield


def make(**overrides) -> Zorro:
    return Zorro(**tiny_kwargs(**overrides)).eval()


def test_torch_export_of_the_model_itself_matches_eager():
    model = make()
    audio, video = torch.rand(2, 4000) - 0.5, torch.randn(2, 3, 4, 16, 16)
    program = torch.export.export(model, (), {"audio": audio, "video": video})
    with torch.no_grad():
        expected = model(audio=audio, video=video)
        got = program.module()(audio=audio, video=video)
    assert (got - expected).abs().max() <= TOL


def test_cli_torch_export_dynamic_batch_round_trips_through_save_load(tmp_path):
    model = make(return_token_types=("AUDIO", "VIDEO", "FUSION", "GLOBAL"))
    model.save_pretrained(str(tmp_path / "m"))
    out = tmp_path / "m.pt2"
    rc = cli_main(["export", "--format", "torch-export", str(tmp_path / "m"), str(out), "--audio-samples", "4000",
                   "--video-shape", "4", "16", "16", "--batch", "2"])
    assert rc == 0 and out.is_file()
    program = torch.export.load(str(out))
    for batch in (1, 5):
        inputs = example_inputs(model, audio_samples=4000, video_shape=(4, 16, 16), batch=batch)
        assert verify_program(program, model, inputs) <= TOL


def test_cli_onnx_dynamic_batch_runs_in_onnxruntime(tmp_path):
    pytest.importorskip("onnxscript")
    pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    model = make()
    model.save_pretrained(str(tmp_path / "m"))
    out = tmp_path / "m.onnx"
    rc = cli_main(["export", "--format", "onnx", str(tmp_path / "m"), str(out), "--audio-samples", "4000",
                   "--video-shape", "4", "16", "16"])
    assert rc == 0 and out.is_file()
    for batch in (1, 3):  # dynamic batch: other sizes than the traced one
        inputs = example_inputs(model, audio_samples=4000, video_shape=(4, 16, 16), batch=batch,
                                generator=torch.Generator().manual_seed(batch))
        assert verify_onnx(out, model, inputs) <= TOL
    meta = {p.key: p.value for p in onnx.load(str(out), load_external_data=False).metadata_props}
    assert json.loads(meta["zorro_config"]) == model.config.to_dict()
    assert json.loads(meta["zorro_inputs"]) == {"audio": ["batch", 4000], "video": ["batch", 3, 4, 16, 16]}


def test_export_leaves_training_mode_and_errors(tmp_path):
    model = make().train()
    with pytest.raises(ValueError, match="audio_samples and/or video_shape"):
        export_program(model)
    with pytest.raises(ValueError, match="video_shape"):
        example_inputs(model, video_shape=(4, 16))
    with pytest.raises(ValueError, match="multiples of the tubelet"):
        export_program(model, video_shape=(3, 16, 16))
    assert model.training
    assert cli_main(["export", "--format", "onnx", str(tmp_path / "nowhere"), "x.onnx", "--audio-samples", "100"]) == 1
    assert cli_main(["export", "--format", "onnx", str(tmp_path), "x.onnx"]) == 1  # no input shape given


@pytest.mark.slow
def test_onnx_seed_spectrogram_audio_only_static_batch(tmp_path):
    pytest.importorskip("onnxscript")
    pytest.importorskip("onnxruntime")
    model = make(audio_frontend="spectrogram", spec_n_fft=32, pos_embed="none").train()
    path = export_onnx(model, tmp_path / "a.onnx", audio_samples=3000, batch=2, dynamic_batch=False, return_token_indices=(3, 0))
    assert model.training
    inputs = example_inputs(model, audio_samples=3000, batch=2)
    assert verify_onnx(path, model, inputs, return_token_indices=(3, 0)) <= TOL


@pytest.mark.slow
def test_torch_export_video_only():
    model = make()
    program = export_program(model, video_shape=(2, 8, 8))
    inputs = example_inputs(model, video_shape=(2, 8, 8), batch=3)
    assert verify_program(program, model, inputs) <= TOL
