"""End to end: training over a manifest where 20% of the files are damaged, empty, missing or
lack a modality runs to the end; every unreadable file is skipped, counted, logged once and
listed in the run folder (skipped.jsonl)."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import media  # noqa: E402
from toy import tiny_config  # noqa: E402

from zorro.data import SkipTracker  # noqa: E402
from zorro.train import Trainer  # noqa: E402

CLIP = {"duration": 0.5, "num_frames": 4, "image_size": 16, "sample_rate": 16000}
EPOCHS = 2


def _manifest(root: Path) -> tuple[Path, dict[str, Path]]:
    """30 files: 24 good and 6 (20%) bad: four unreadable (random bytes, cut right after the
    header, empty, missing) and one without audio and one without video (these train on the
    modality they have). Returns the CSV and the unreadable files."""
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    kw = dict(duration=0.6, width=32, height=32, sample_rate=16000, layout="mono")
    for i in range(24):
        rows.append((media.make_media(root / f"good{i}.mp4", tone_hz=300.0 + 40 * i, **kw), "ab"[i % 2]))
    good = rows[0][0]
    unreadable = {
        "garbage": root / "garbage.mp4",
        "empty": root / "empty.mp4",
        "missing": root / "missing.mp4",
    }
    unreadable["garbage"].write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    unreadable["empty"].write_bytes(b"")
    rows += [(unreadable["garbage"], "a"), (unreadable["empty"], "b"), (unreadable["missing"], "a")]
    rows.append((media.make_media(root / "noaudio.mp4", audio_codec=None, **kw), "b"))
    rows.append((media.make_media(root / "novideo.mka", container_format="matroska", video_codec=None, **kw), "a"))
    # a file cut right after its header: nothing in any window decodes
    header_only = root / "header_only.mp4"
    header_only.write_bytes(good.read_bytes()[:48])
    unreadable["header_only"] = header_only
    rows.append((header_only, "b"))
    assert len(rows) == 30 and sum(1 for r in rows if not str(r[0]).startswith(str(root / "good"))) == 6
    csv = root / "train.csv"
    csv.write_text("path,label\n" + "".join(f"{p},{lab}\n" for p, lab in rows))
    return csv, unreadable


@pytest.mark.slow
def test_training_over_damaged_files_runs_to_the_end_and_reports_each_bad_file(tmp_path, caplog):
    csv, unreadable = _manifest(tmp_path / "media")
    # evaluation over 4 good files and 2 unreadable ones (after each epoch and at the end)
    eval_bad = [unreadable["garbage"], tmp_path / "media" / "gone.mp4"]
    eval_csv = tmp_path / "media" / "eval.csv"
    eval_csv.write_text("path,label\n" + "".join(f"{tmp_path / 'media' / f'good{i}.mp4'},{'ab'[i % 2]}\n" for i in range(4))
                        + "".join(f"{p},a\n" for p in eval_bad))
    cfg = tiny_config(tmp_path / "run", data={"train_manifest": str(csv), "eval_manifest": str(eval_csv), **CLIP, "batch_size": 6,
                                              "num_workers": 2}, optim={"epochs": EPOCHS}, run={"eval_every": 1})
    trainer = Trainer(cfg)
    with caplog.at_level(logging.WARNING):
        trainer.fit()
    assert trainer.step == trainer.total_steps  # trained to the end
    bad = {str(p) for p in unreadable.values()}
    assert set(trainer.skips.bad_files) == bad
    assert trainer.skips.total_skipped == len(bad) * EPOCHS  # every epoch meets each bad file once
    for path in bad:  # logged once each, however many epochs and workers met it
        msgs = [r.getMessage() for r in caplog.records]
        assert sum(path in m and "skipping unreadable" in m and "(evaluation)" not in m for m in msgs) == 1
    # evaluation ran twice (after epoch 1, at the end): its unreadable files are logged once and listed apart
    assert set(trainer.eval_skips.bad_files) == {str(p) for p in eval_bad}
    assert trainer.eval_skips.total_skipped == 2 * len(eval_bad)
    for path in map(str, eval_bad):
        assert sum(path in r.getMessage() and "(evaluation)" in r.getMessage() for r in caplog.records) == 1
    listed = [json.loads(line)["path"] for line in (tmp_path / "run" / "skipped_eval.jsonl").read_text().splitlines()]
    assert sorted(listed) == sorted(map(str, eval_bad))
    report = [json.loads(line) for line in (tmp_path / "run" / "skipped.jsonl").read_text().splitlines()]
    assert {r["path"] for r in report} == bad and all(r["times_skipped"] == EPOCHS for r in report)
    reasons = {Path(r["path"]).name: r["reason"] for r in report}
    assert reasons["missing.mp4"] == "file does not exist" and reasons["empty.mp4"] == "file is empty"
    assert "FFmpeg cannot open it" in reasons["garbage.mp4"]
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()


def test_skip_report_lists_each_file_once_with_its_count(tmp_path):
    tracker = SkipTracker()
    tracker.write_report(tmp_path / "skipped.jsonl")
    assert (tmp_path / "skipped.jsonl").read_text() == ""  # nothing skipped: an empty report
    tracker.update({"num_skipped": 2, "skipped": [("a.mp4", "file is empty"), ("b.mp4", "file does not exist")]})
    tracker.update({"num_skipped": 1, "skipped": [("a.mp4", "file is empty")]})
    lines = [json.loads(x) for x in tracker.write_report(tmp_path / "skipped.jsonl").read_text().splitlines()]
    assert lines == [{"path": "a.mp4", "reason": "file is empty", "times_skipped": 2},
                     {"path": "b.mp4", "reason": "file does not exist", "times_skipped": 1}]
