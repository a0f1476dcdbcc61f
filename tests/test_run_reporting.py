"""What a run reports besides log.jsonl: TensorBoard event files, and progress that does not
flood a log when the console is not a terminal."""

from __future__ import annotations

import io
import json
import logging

import pytest

from toy import ToyAV, tiny_config, toy_vocab
from zorro.train import train
from zorro.train.reporting import Progress, scalars_of


def _scalars(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_a_run_writes_tensorboard_scalars_beside_its_json_log(tmp_path):
    train(tiny_config(tmp_path, optim={"epochs": 1}), ToyAV(), ToyAV(n=16, seed=1), toy_vocab())
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    scalars = _scalars(tmp_path / "tensorboard")
    assert {"loss", "lr", "throughput/clips_per_s", "grad_norm", "eval/audio/top1", "eval/average/top1",
            "eval/audio_only/top1"} <= set(scalars)
    assert not any("confusion" in tag for tag in scalars)
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    logged = [(r["step"], r["loss"]) for r in records if "loss" in r]
    assert [step for step, _ in scalars["loss"]] == [step for step, _ in logged]
    assert [value for _, value in scalars["loss"]] == pytest.approx([value for _, value in logged], rel=1e-6)
    final = next(r["eval"] for r in records if "eval" in r)
    assert scalars["eval/audio/top1"][-1][1] == pytest.approx(final["audio"]["top1"])


def test_tensorboard_can_be_turned_off(tmp_path):
    train(tiny_config(tmp_path, optim={"max_steps": 2}, run={"tensorboard": False}), ToyAV(n=16), None, toy_vocab())
    assert not (tmp_path / "tensorboard").exists() and (tmp_path / "log.jsonl").exists()


def test_progress_off_a_terminal_is_a_few_log_lines_not_a_bar(tmp_path, capfd, caplog):
    caplog.set_level(logging.INFO, logger="zorro.train")
    cfg = tiny_config(tmp_path, data={"batch_size": 4}, optim={"max_steps": 20}, run={"progress": True, "log_every": 10, "tensorboard": False})
    train(cfg, ToyAV(n=80), None, toy_vocab())  # pytest's captured stderr is not a terminal
    lines = [r.getMessage() for r in caplog.records if "supervised: step" in r.getMessage()]
    assert 2 <= len(lines) <= 11, lines  # every tenth of the run (and the last step)
    assert lines[-1].startswith("supervised: step 20/20 (100%)")
    err = capfd.readouterr().err
    assert "\r" not in err and "step/s" not in err  # no tqdm refreshes in a redirected log


def test_progress_line_count_is_bounded_by_fraction_and_time():
    now = [0.0]
    progress = Progress(1000, desc="pretrain", stream=io.StringIO(), every_fraction=0.1, every_seconds=60.0, clock=lambda: now[0])
    for step in range(1, 1001):
        now[0] += 1.0  # a 1,000-second run: 10 lines by fraction plus at most 16 by time
        progress.update(step, loss=1.0, clips_per_s=10.0)
    assert 10 <= progress.lines <= 10 + 1 + 1000 // 60
    quiet = Progress(1000, stream=io.StringIO(), clock=lambda: 0.0)
    for step in range(1, 1001):
        quiet.update(step, loss=1.0, clips_per_s=10.0)
    assert quiet.lines == 10  # a fast run: one line per tenth
    with pytest.raises(ValueError, match="every_fraction"):
        Progress(10, every_fraction=0.0)


def test_progress_on_a_terminal_is_a_bar():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    stream = Terminal()
    progress = Progress(20, desc="supervised", stream=stream)
    for step in range(1, 21):
        progress.update(step, loss=0.5, clips_per_s=100.0)
    progress.close()
    assert progress.lines == 0 and "20/20" in stream.getvalue() and "\r" in stream.getvalue()


def test_scalars_of_a_record():
    record = {"step": 3, "epoch": 0, "lr": 0.1, "loss": 2.0, "parts": {"total": 2.0, "audio_video": 1.5, "temperature": 0.1},
              "clips_per_s": 50.0, "grad_norm": 0.7}
    assert scalars_of(record) == {"loss": 2.0, "lr": 0.1, "throughput/clips_per_s": 50.0, "grad_norm": 0.7,
                                  "loss_parts/audio_video": 1.5, "loss_parts/temperature": 0.1}
    evaluation = {"step": 3, "eval": {"a2v_r1": 0.5, "audio": {"top1": 0.9, "confusion": [[1, 0], [0, 1]]}, "names": ["a"]}}
    assert scalars_of(evaluation) == {"eval/a2v_r1": 0.5, "eval/audio/top1": 0.9}
