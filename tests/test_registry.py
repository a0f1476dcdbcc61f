"""The dataset registry: one module per dataset, read by zorro prepare, zorro cv, the protocol
metrics and --help; UrbanSound8K added as one module (parser, prepare, ten-fold cv)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch
import yaml

from zorro.cli import build_parser, main
from zorro.data import registry
from zorro.data.annotations.records import AnnotationReader, SegmentRow

pytestmark = pytest.mark.filterwarnings("ignore:audio features of shape")  # short test clips cropped to whole patches

REGISTRY_DIR = Path(registry.__file__).parent


def test_every_dataset_is_one_module_with_its_spec():
    modules = sorted(p.stem for p in REGISTRY_DIR.glob("*.py") if not p.name.startswith("_"))
    assert modules == ["audioset", "esc50", "kinetics_sounds", "urbansound8k", "vggsound"]
    assert registry.names() == ("audioset", "esc50", "kinetics-sounds", "urbansound8k", "vggsound")
    for spec in registry.specs():
        assert spec.templates and spec.fields and spec.duration > 0 and spec.protocol.headline
    assert registry.get("esc50").protocol.folds == (1, 2, 3, 4, 5)
    assert registry.get("urbansound8k").protocol.folds == tuple(range(1, 11))
    assert registry.get("audioset").protocol.headline == "mAP" and registry.get("audioset").multi_label
    with pytest.raises(ValueError, match=r"unknown dataset 'esc-50'; the registered datasets are \['audioset'"):
        registry.get("esc-50")


def test_no_dataset_name_is_spelled_outside_its_module():
    import ast

    src = Path(registry.__file__).parents[2]
    for path in [src / "metrics.py", src / "protocols.py", src / "recipes" / "cross_validation.py", src / "cli" / "prepare_datasets.py",
                 src / "cli" / "cv.py", src / "cli" / "prepare.py", src / "cli" / "train_cmd.py", src / "train" / "config.py"]:
        literals = {n.value for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
        assert not literals & set(registry.names()), f"{path.name} names datasets: {literals & set(registry.names())}"


def test_protocols_and_help_come_from_the_registry(capsys):
    from zorro.metrics import PROTOCOLS, dataset_metrics

    assert PROTOCOLS == registry.names()
    scores = torch.tensor([[2.0, 0.0, 1.0], [0.0, 3.0, 1.0], [1.0, 0.0, 4.0], [5.0, 1.0, 0.0]])
    assert dataset_metrics("urbansound8k", scores, torch.tensor([0, 1, 2, 1])) == {"top1": 0.75}
    assert set(dataset_metrics("vggsound", scores, torch.tensor([0, 1, 2, 1]))) == {"top1", "mAP", "num_classes_excluded"}  # top-5 of 3 classes dropped
    with pytest.raises(ValueError, match="unknown evaluation protocol 'x'"):
        dataset_metrics("x", scores, torch.tensor([0, 1, 2, 1]))
    with pytest.raises(SystemExit):
        main(["prepare", "--help"])
    text = capsys.readouterr().out
    assert all(name in text for name in registry.names()) and "merge" in text
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    assert "urbansound8k" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["cv", "--help"])
    assert "urbansound8k (10 folds)" in " ".join(capsys.readouterr().out.split())


class _Lines(AnnotationReader):
    """A toy dataset: one clip id a line, label after a space."""

    def __init__(self, path, on_error):
        super().__init__([str(path)], on_error)
        self.path = Path(path)

    def _rows(self):
        for line, text in enumerate(self.path.read_text().splitlines(), 1):
            self.rows += 1
            clip, label = text.split()
            yield SegmentRow(clip, (label,), filename=clip, source=str(self.path), line=line)

    def labels(self):
        return ["a", "b"]


def test_a_dataset_defined_elsewhere_is_one_registration_away(tmp_path, capsys):
    def add_arguments(p: argparse.ArgumentParser) -> None:
        p.add_argument("--list", required=True)

    spec = registry.DatasetSpec(
        name="toy-lines", title="Toy", summary="a toy dataset", description="One clip a line.", multi_label=False,
        templates=("{filename}.wav",), fields=("id", "filename"), duration=1.5,
        protocol=registry.Protocol(metrics="single_label", headline="top1"),
        add_arguments=add_arguments, open_reader=lambda args, on_error: _Lines(args.list, on_error), video=False, clips=(),
    )
    registry.register(spec)
    try:
        with pytest.raises(ValueError, match="already registered"):
            registry.register(registry.DatasetSpec(**{**spec.__dict__}))
        (tmp_path / "list.txt").write_text("x1 a\nx2 b\n")
        (tmp_path / "media").mkdir()
        (tmp_path / "media" / "x2.wav").write_bytes(b"")
        assert main(["prepare", "toy-lines", "--list", str(tmp_path / "list.txt"), "--media-root", str(tmp_path / "media"),
                     "--out", str(tmp_path / "o"), "--dry-run"]) == 0
        summary = json.loads(capsys.readouterr().out)
        assert (summary["found"], summary["missing"], summary["first_missing"]) == (1, 1, ["x1.wav"])
        assert "(default 1.5;" in " ".join(build_parser()._subparsers._group_actions[0].choices["prepare"]
                                            ._subparsers._group_actions[0].choices["toy-lines"].format_help().split())
    finally:
        registry._REGISTRY.pop("toy-lines", None)
    with pytest.raises(ValueError, match="put its fold field"):
        registry.DatasetSpec(**{**spec.__dict__, "name": "x", "protocol": registry.Protocol(metrics="single_label", folds=(1, 2))})
    with pytest.raises(ValueError, match="not one of"):
        registry.DatasetSpec(**{**spec.__dict__, "name": "merge"})
    with pytest.raises(ValueError, match="Protocol.metrics"):
        registry.Protocol(metrics="top1")


# ------------------------------------------------------------------------------ UrbanSound8K

US8K_HEADER = "slice_file_name,fsID,start,end,salience,fold,classID,class\n"


def test_urbansound8k_parser(tmp_path):
    from zorro.data.registry.urbansound8k import read_urbansound8k

    rows = ["100032-3-0-0.wav,100032,0.0,0.317551,1,5,3,dog_bark", "100263-2-0-117.wav,100263,58.5,62.5,1,5,2,children_playing",
            "102106-1-0-0.wav,102106,0.0,4.0,2,7,1,car_horn", "103074-0-0-0.wav,103074,3.0,7.0,1,10,0,air_conditioner"]
    path = tmp_path / "UrbanSound8K.csv"
    path.write_text(US8K_HEADER + "\n".join(rows) + "\r\n")
    res = read_urbansound8k(path)
    assert res.labels == ["air_conditioner", "car_horn", "children_playing", "dog_bark"] and not res.multi_label
    first = res.records[0]
    assert (first.id, first.fold, first.filename, first.labels, first.start) == ("100032-3-0-0.wav", 5, "100032-3-0-0.wav", ("dog_bark",), None)
    assert first.extra == {"fsID": "100032", "classID": 3, "salience": 1, "freesound_start": 0.0, "freesound_end": 0.317551}
    assert [r.fold for r in read_urbansound8k(path, folds=(5,)).records] == [5, 5]
    for bad, match in [("x.wav,1,0.0,1.0,1,11,0,air_conditioner", "malformed row"), ("x.wav,1,a,1.0,1,1,0,air_conditioner", "must be integers"),
                       ("x.wav,1,0.0,1.0,1,1,0,siren", "contradicts"), (rows[0], "duplicate file")]:
        path.write_text(US8K_HEADER + "\n".join(rows) + "\n" + bad + "\n")
        with pytest.raises(ValueError, match=match):
            read_urbansound8k(path)
    path.write_text(US8K_HEADER + rows[0] + "\n")
    with pytest.raises(ValueError, match=r"classID must be 0..C-1 .*missing classIDs \[0, 1, 2\]"):
        read_urbansound8k(path)
    path.write_text("slice,fold\n")
    with pytest.raises(ValueError, match="expected the UrbanSound8K header"):
        read_urbansound8k(path)


def _us8k_corpus(root: Path) -> Path:
    from media import make_media

    audio = root / "UrbanSound8K" / "audio"
    rows = []
    for fold in range(1, 11):
        for class_id, name in ((0, "air_conditioner"), (1, "dog_bark")):
            fname = f"{1000 + 10 * fold + class_id}-{class_id}-0-0.wav"
            (audio / f"fold{fold}").mkdir(parents=True, exist_ok=True)
            make_media(audio / f"fold{fold}" / fname, container_format="wav", video_codec=None, audio_codec="pcm_s16le", layout="mono",
                       sample_rate=22050 if fold % 2 else 44100, duration=0.5, tone_hz=300 + 900 * class_id)
            rows.append(f"{fname},{1000 + 10 * fold + class_id},1.0,1.5,1,{fold},{class_id},{name}")
    rows.append("9999-1-0-0.wav,9999,0.0,4.0,2,3,1,dog_bark")  # listed, never downloaded
    meta = root / "UrbanSound8K" / "metadata"
    meta.mkdir(parents=True)
    (meta / "UrbanSound8K.csv").write_text(US8K_HEADER + "\n".join(rows) + "\n")
    return root / "UrbanSound8K"


@pytest.mark.slow
def test_urbansound8k_prepare_and_ten_fold_cv(tmp_path, capsys):
    from toy import TINY_MODEL

    from zorro.data.sample_meta import index_meta_field
    from zorro.data.shards.format import iter_list, read_dataset_json

    us8k = _us8k_corpus(tmp_path)
    assert main(["prepare", "urbansound8k", "--meta", str(us8k / "metadata" / "UrbanSound8K.csv"), "--media-root", str(us8k / "audio"),
                 "--out", str(tmp_path / "shards"), "--duration", "0.5", "--shard-samples", "6", "--num-workers", "1"]) == 0
    info = read_dataset_json(tmp_path / "shards")
    assert info["num_samples"] == 20 and info["labels"] == ["air_conditioner", "dog_bark"] and info["settings"]["video"] is False
    assert info["counts"]["missing"] == 1 and [m["id"] for m in iter_list(tmp_path / "shards", "missing")] == ["9999-1-0-0.wav"]
    assert sorted(set(index_meta_field(tmp_path / "shards", "fold"))) == list(range(1, 11))  # the folds are in the indexes

    cfg = {
        "model": {"arch": {**TINY_MODEL, "video_temporal_patch_size": 2}, "precision": "fp32"},
        "data": {"train_shards": str(tmp_path / "shards"), "duration": 0.5, "num_frames": 2, "image_size": 32, "batch_size": 6,
                 "num_workers": 0},
        "optim": {"epochs": 1, "lr": 3e-3, "warmup_steps": 1},
        "run": {"progress": False, "log_every": 1, "tensorboard": False},
    }
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))  # no eval_protocol: the folder says it is UrbanSound8K
    capsys.readouterr()
    assert main(["cv", "-c", str(tmp_path / "cfg.yaml"), "--out", str(tmp_path / "cv")]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["protocol"] == "urbansound8k" and len(printed["top1"]["folds"]) == 10
    result = json.loads((tmp_path / "cv" / "cv_metrics.json").read_text())
    assert result["samples"] == {str(k): {"train": 18, "eval": 2} for k in range(1, 11)}  # each fold held out once
    accs = [result["per_fold"][str(k)]["top1"] for k in range(1, 11)]
    assert result["summary"]["mean"] == pytest.approx(sum(accs) / 10) and result["summary"]["num_folds"] == 10
    assert result["summary"]["std"] == pytest.approx((sum((a - sum(accs) / 10) ** 2 for a in accs) / 9) ** 0.5)


def test_urbansound8k_prepare_dry_run_finds_the_fold_folders(tmp_path, capsys):
    us8k = _us8k_corpus(tmp_path)
    assert main(["prepare", "urbansound8k", "--meta", str(us8k / "metadata" / "UrbanSound8K.csv"), "--media-root", str(us8k / "audio"),
                 "--out", str(tmp_path / "o"), "--dry-run"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["rows"], summary["found"], summary["missing"]) == (21, 20, 1)
    assert summary["first_missing"] == ["fold3/9999-1-0-0.wav"] and summary["name_templates"][0] == "fold{fold}/{filename}"
