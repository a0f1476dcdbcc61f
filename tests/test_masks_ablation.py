"""The mask ablation recipe (``zorro ablate masks``) on a tiny configuration, and the
unimodal evaluation it relies on."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import tiny_kwargs
from zorro import Zorro
from zorro.evaluate import centroid_probe, collect_embeddings
from zorro.recipes import ablate_masks
from zorro.recipes.ablate_masks import ABLATION_SETTINGS, _arch, format_table, run_ablation, variants
from zorro.tasks import ZorroPretrainer

pytest.importorskip("sklearn")
from zorro.demo.speech import espeak_available  # noqa: E402


def _batches(n_batches=2, b=6):
    g = torch.Generator().manual_seed(0)
    out = []
    for i in range(n_batches):
        out.append({
            "audio": torch.randn(b, 8000, generator=g), "video": torch.randn(b, 3, 4, 16, 16, generator=g),
            "has_audio": torch.ones(b, dtype=torch.bool), "has_video": torch.ones(b, dtype=torch.bool),
            "label": torch.arange(b) % 3,
        })
    return out


@pytest.mark.parametrize("rule", ["zorro", "full"])
def test_unimodal_embeddings_equal_the_both_input_ones_for_zorro_alone(rule):
    torch.manual_seed(0)
    backbone = Zorro(**tiny_kwargs(mask_rule=rule))
    with torch.no_grad():  # weights large enough for the cross-modal path to show (see test_masks_model.loud)
        for module in backbone.modules():
            if isinstance(module, torch.nn.Linear):
                module.weight.normal_(0, 0.2)
    task = ZorroPretrainer(backbone, proj_dim=8)
    loader = _batches()
    both = collect_embeddings(task, loader)
    uni = collect_embeddings(task, loader, unimodal=True)
    assert uni["audio"].shape == both["audio"].shape == (12, 8) and torch.equal(uni["label"], both["label"])
    gap = max(float((uni[k] - both[k]).abs().max()) for k in ("audio", "video"))
    assert (gap <= 1e-5) if rule == "zorro" else (gap > 1e-3)
    probe = centroid_probe(backbone, loader, loader, unimodal=True)
    assert set(probe) == {"audio", "video"} and all(0.0 <= v <= 1.0 for v in probe.values())
    if rule == "zorro":
        both_probe = centroid_probe(backbone, loader, loader)
        assert probe == {k: both_probe[k] for k in ("audio", "video")}


def test_variants_and_zero_fusion_architecture():
    names = [(v["name"], v["seed"]) for v in variants(ABLATION_SETTINGS)]
    assert names[:6] == [("zorro", 0), ("full", 0), ("bottleneck", 0), ("zorro", 1), ("full", 1), ("bottleneck", 1)]
    assert ("zorro, 0 fusion", 0) in names and ("zorro, 16 fusion", 0) in names
    arch = _arch(ABLATION_SETTINGS["model"], {"mask_rule": "zorro", "num_fusion_tokens": 0})
    assert arch["num_fusion_tokens"] == 0 and "FUSION" not in arch["return_token_types"]
    Zorro(**arch)  # a valid model (a FUSION output would need fusion tokens)
    assert _arch(ABLATION_SETTINGS["model"], {"mask_rule": "full", "num_fusion_tokens": 4})["mask_rule"] == "full"


# Three runs cover every path: "zorro" (with zero fusion tokens), "full" and "bottleneck".
QUICK = {"fusion_tokens": [0], "rules": ["full", "bottleneck"]}
QUICK_FLAGS = ["--set", "fusion_tokens=[0]", "--set", "rules=[full, bottleneck]"]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    if not espeak_available():
        pytest.skip("eSpeak NG unavailable")
    root = tmp_path_factory.mktemp("ablate")
    metrics = run_ablation(out_dir=root / "out", data_dir=root / "data", quick=True, config_overrides=QUICK)
    return root, metrics


@pytest.mark.slow
def test_quick_ablation_writes_every_output(quick_run):
    root, metrics = quick_run
    out = root / "out"
    assert list(metrics["summary"]) == ["full", "bottleneck", "zorro, 0 fusion"]
    assert metrics["runs_finished"] == metrics["runs_planned"] == 3
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["summary"].keys() == metrics["summary"].keys()
    assert (out / "ablation.png").stat().st_size > 1000
    table = (out / "table.md").read_text()
    assert table.count("\n") == 2 + 3 and "| full | full | 4 | 0 |" in table
    for result in metrics["results"]:
        assert result["curve"]["step"] and len(result["curve"]["loss"]) == len(result["curve"]["step"])
        for key in ("retrieval_unimodal", "retrieval_both", "probe_unimodal"):
            assert all(0.0 <= v <= 1.0 for v in result[key].values()), key
        assert {"audio_only", "video_only"} <= set(result["finetune"])
    # The rule really reached the trained models (pre-trained and fine-tuned).
    for name, rule, fusion in (("full-seed0", "full", 4), ("bottleneck-seed0", "bottleneck", 4), ("zorro-0_fusion-seed0", "zorro", 0)):
        for stage in ("pretrain", "finetune"):
            config = json.loads((out / "runs" / name / stage / "model" / "config.json").read_text())["config"]
            assert (config["mask_rule"], config["num_fusion_tokens"]) == (rule, fusion), (name, stage)


@pytest.mark.slow
def test_rerun_reuses_finished_runs_and_cli_prints_the_table(quick_run, monkeypatch, capsys):
    root, metrics = quick_run

    def must_not_train(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(ablate_masks, "_run_one", must_not_train)
    from zorro.cli import main

    assert main(["ablate", "masks", "--quick", "--out", str(root / "out"), "--data", str(root / "data"), *QUICK_FLAGS]) == 0
    printed = capsys.readouterr().out
    assert format_table(metrics) in printed and "3 runs" in printed
    assert json.loads((root / "out" / "metrics.json").read_text())["data"] == "not decoded: every run was reused"
    # Another list of runs reuses the runs it shares ("full" alone here) ...
    only_full = run_ablation(out_dir=root / "out", data_dir=root / "data", quick=True, config_overrides={"rules": ["full"], "fusion_tokens": []})
    assert list(only_full["summary"]) == ["full"] and only_full["results"][0] == metrics["results"][0]
    # ... but a changed setting is a different run: it trains again.
    with pytest.raises(AssertionError, match="trained again"):
        run_ablation(out_dir=root / "out", data_dir=root / "data", quick=True, config_overrides={**QUICK, "pretrain": {"optim": {"lr": 1e-3}}})
