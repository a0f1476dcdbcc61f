"""The default audio-video models compute what they computed before the modality table
existed: outputs of four stored models (the zorro, full and bottleneck rules, and the seed's
layout) equal the outputs stored with them (tests/fixtures/default_outputs).

Bit for bit where the fixture holds outputs made on this kind of CPU (the last bits of float32
matrix products differ between instruction sets and vendors; see make_fixture.py); on every
machine, within 1e-5 of the outputs of the machine that made the fixture."""

from __future__ import annotations

import importlib.util
import json
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from zorro import Zorro

HERE = Path(__file__).resolve().parent / "fixtures" / "default_outputs"
CASES = ("zorro", "full", "bottleneck", "seed")
ACROSS_MACHINES = 1e-5  # largest |difference| allowed against another CPU's outputs


def _machine_signature() -> str:
    spec = importlib.util.spec_from_file_location("make_default_outputs", HERE / "make_fixture.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.machine_signature()


@pytest.fixture(scope="module")
def reference():
    return load_file(str(HERE / "expected.safetensors"))


@pytest.fixture(scope="module")
def this_machines():
    """The stored outputs made on this kind of CPU, or None."""
    machine = _machine_signature()
    if json.loads((HERE / "expected.json").read_text())["machine"] == machine:
        return load_file(str(HERE / "expected.safetensors"))
    path = HERE / f"expected-{machine}.safetensors"
    return load_file(str(path)) if path.exists() else None


def _outputs(case, backend, audio, video):
    model = Zorro.from_pretrained(str(HERE / case), attn_backend=backend).eval()
    got = {}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the 1 s clip is cropped to whole patches
        for given, inputs in (("both", dict(audio=audio, video=video)), ("audio", dict(audio=audio)), ("video", dict(video=video))):
            for name, emb in model.encode(**inputs).embeddings.items():
                got[f"{case}.{backend}.{given}.{name}"] = emb
        got[f"{case}.{backend}.forward"] = model(audio=audio, video=video)
    return got


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("backend", ["sdpa", "eager"])
def test_outputs_equal_the_stored_ones_bit_for_bit(case, backend, reference, this_machines):
    if this_machines is None:
        pytest.skip(f"no stored outputs for a {_machine_signature()} CPU (make_fixture.py --outputs-only writes them)")
    got = _outputs(case, backend, reference["input.audio"], reference["input.video"])
    stored = {k for k in this_machines if k.startswith(f"{case}.{backend}.")}
    assert set(got) == stored
    for key, value in got.items():
        assert torch.equal(value, this_machines[key]), key


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("backend", ["sdpa", "eager"])
def test_outputs_match_the_reference_machine_within_1e_5(case, backend, reference):
    got = _outputs(case, backend, reference["input.audio"], reference["input.video"])
    assert set(got) == {k for k in reference if k.startswith(f"{case}.{backend}.")}
    for key, value in got.items():
        diff = (value - reference[key]).abs().max().item()
        assert diff <= ACROSS_MACHINES, (key, diff)


def test_stored_configs_have_no_modality_table():
    for case in CASES:
        doc = json.loads((HERE / case / "config.json").read_text())
        assert doc["format_version"] == 1 and "modalities" not in doc["config"]


@pytest.mark.parametrize("case", CASES)
def test_saving_again_writes_the_same_config(case, tmp_path):
    Zorro.from_pretrained(str(HERE / case)).save_pretrained(str(tmp_path))
    assert json.loads((tmp_path / "config.json").read_text()) == json.loads((HERE / case / "config.json").read_text())
