"""The default audio-video models compute exactly what they computed before the modality
table existed: outputs of four stored models (the zorro, full and bottleneck rules, and the
seed's layout) equal the outputs stored with them (tests/fixtures/default_outputs)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from zorro import Zorro

HERE = Path(__file__).resolve().parent / "fixtures" / "default_outputs"
CASES = ("zorro", "full", "bottleneck", "seed")


@pytest.fixture(scope="module")
def expected():
    return load_file(str(HERE / "expected.safetensors"))


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("backend", ["sdpa", "eager"])
def test_outputs_equal_the_stored_ones_bit_for_bit(case, backend, expected):
    audio, video = expected["input.audio"], expected["input.video"]
    model = Zorro.from_pretrained(str(HERE / case), attn_backend=backend).eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the 1 s clip is cropped to whole patches
        for given, inputs in (("both", dict(audio=audio, video=video)), ("audio", dict(audio=audio)), ("video", dict(video=video))):
            out = model.encode(**inputs)
            stored = {k.split(".")[-1] for k in expected if k.startswith(f"{case}.{backend}.{given}.")}
            assert set(out.embeddings) == stored, (case, given)
            for name, emb in out.embeddings.items():
                assert torch.equal(emb, expected[f"{case}.{backend}.{given}.{name}"]), (case, backend, given, name)
        assert torch.equal(model(audio=audio, video=video), expected[f"{case}.{backend}.forward"])


def test_stored_configs_have_no_modality_table():
    import json

    for case in CASES:
        doc = json.loads((HERE / case / "config.json").read_text())
        assert doc["format_version"] == 1 and "modalities" not in doc["config"]


@pytest.mark.parametrize("case", CASES)
def test_saving_again_writes_the_same_config(case, tmp_path):
    import json

    Zorro.from_pretrained(str(HERE / case)).save_pretrained(str(tmp_path))
    assert json.loads((tmp_path / "config.json").read_text()) == json.loads((HERE / case / "config.json").read_text())
