"""Files the library reads: damaged weights, configs and checkpoints give an error naming the
file (and the field); a process SIGKILLed while saving a checkpoint resumes from the last
complete one."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from conftest import tiny_kwargs
from zorro import Zorro
from zorro.checkpoint import latest_checkpoint, load_training_checkpoint, save_training_checkpoint
from zorro.cli import main as cli_main
from zorro.hub import WeightsMismatchError, load_state_dict_file

WEIGHTS = "model.safetensors"


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    d = tmp_path_factory.mktemp("pretrained") / "good"
    Zorro(**tiny_kwargs()).eval().save_pretrained(d)
    return d


def _copy(saved, tmp_path, edit) -> Path:
    p = tmp_path / "copy"
    shutil.copytree(saved, p)
    edit(p)
    return p


def _cut(path: Path, keep: int) -> None:
    path.write_bytes(path.read_bytes()[:keep])


def _flip(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda p: _cut(p / WEIGHTS, len((p / WEIGHTS).read_bytes()) // 2), r"model\.safetensors is not a readable safetensors file \(truncated"),
        (lambda p: _cut(p / WEIGHTS, 0), r"model\.safetensors is not a readable safetensors file"),
        (lambda p: _flip(p / WEIGHTS, 20), r"model\.safetensors is not a readable safetensors file"),
        (lambda p: _flip(p / WEIGHTS, len((p / WEIGHTS).read_bytes()) - 10), r"model\.safetensors is damaged: 1 tensor\(s\) do not match .*\['video_embed"),
        (lambda p: _cut(p / "config.json", 40), r"config\.json is not valid JSON \(truncated"),
        (lambda p: (p / "config.json").write_bytes(b"\xff\xfe\x00garbage"), r"config\.json is not valid JSON"),
    ],
    ids=["weights-truncated", "weights-empty", "weights-header-byte", "weights-data-byte", "config-truncated", "config-binary"],
)
def test_damaged_pretrained_files_name_the_file(saved, tmp_path, edit, message):
    folder = _copy(saved, tmp_path, edit)
    with pytest.raises(ValueError, match=message):
        Zorro.from_pretrained(folder)


def test_config_field_of_the_wrong_type_names_file_and_field(saved, tmp_path):
    def edit(p):
        doc = json.loads((p / "config.json").read_text())
        doc["config"]["depth"] = "deep"
        (p / "config.json").write_text(json.dumps(doc))

    folder = _copy(saved, tmp_path, edit)
    with pytest.raises(ValueError, match=r"config\.json: depth must be a positive int, got 'deep'"):
        Zorro.from_pretrained(folder)


def test_weights_of_another_configuration_are_listed_with_the_file(saved, tmp_path):
    folder = _copy(saved, tmp_path, lambda p: save_file(Zorro(**tiny_kwargs(depth=3)).state_dict(), str(p / WEIGHTS)))
    with pytest.raises(WeightsMismatchError, match=r"model\.safetensors does not fit the model: unexpected keys .*blocks\.2\."):
        Zorro.from_pretrained(folder)


def test_foreign_safetensors_without_checksums_still_load(tmp_path):
    t = {"a": torch.arange(6.0).reshape(2, 3)}
    save_file(t, str(tmp_path / "x.safetensors"))  # written by another tool: no checksum record
    assert torch.equal(load_state_dict_file(tmp_path / "x.safetensors")["a"], t["a"])


def test_yaml_config_with_a_wrong_type_names_file_and_field(tmp_path, caplog):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("data:\n  batch_size: many\n")
    assert cli_main(["train", "--config", str(cfg), "--out", str(tmp_path / "r")]) == 1
    assert f"{cfg}: data.batch_size must be an integer, got 'many'" in caplog.text
    cfg.write_text("optim:\n  lr: [1]\n")
    assert cli_main(["train", "--config", str(cfg), "--out", str(tmp_path / "r")]) == 1
    assert f"{cfg}: optim.lr must be a number, got [1]" in caplog.text
    cfg.write_text("data: {batch_size: 4\n")
    assert cli_main(["train", "--config", str(cfg), "--out", str(tmp_path / "r")]) == 1
    assert f"{cfg}: not valid YAML" in caplog.text


def test_truncated_checkpoint_state_names_the_file(tmp_path):
    model = Zorro(**tiny_kwargs())
    ckpt = save_training_checkpoint(tmp_path, model=model, step=1)
    _cut(ckpt / "state.pt", 100)
    with pytest.raises(ValueError, match=r"state\.pt is not a readable checkpoint state file \(truncated"):
        load_training_checkpoint(tmp_path, model=model)


# A child process saves step 1, then is SIGKILLed in the middle of saving step 2, at the
# point named on its command line, after writing part of the file there.
_KILLED_SAVE = textwrap.dedent(
    """
    import os, signal, sys
    import torch
    sys.path.insert(0, {tests!r})
    from conftest import tiny_kwargs
    import zorro.checkpoint as ck
    from zorro import Zorro

    run, point = sys.argv[1], sys.argv[2]
    torch.manual_seed(0)
    model = Zorro(**tiny_kwargs())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    ck.save_training_checkpoint(run, model=model, optimizer=opt, step=1)
    torch.save(model.state_dict(), os.path.join(run, "step1.pt"))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)

    def die(path):
        with open(path, "wb") as f:
            f.write(b"partial")
            f.flush()
            os.fsync(f.fileno())
        os.kill(os.getpid(), signal.SIGKILL)

    if point == "weights":
        ck.atomic_save_safetensors = lambda path, *a, **k: die(path)
    elif point == "state":
        ck._torch_save = lambda obj, path: die(path)
    elif point == "pointer":
        real = ck.atomic_write_text
        ck.atomic_write_text = lambda path, text: die(str(path) + ".tmp") if str(path).endswith(ck.LATEST_NAME) else real(path, text)
    ck.save_training_checkpoint(run, model=model, optimizer=opt, step=2)
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("point", ["weights", "state", "pointer"])
def test_sigkill_during_a_checkpoint_save_resumes_from_the_previous_one(tmp_path, point):
    script = tmp_path / "killed_save.py"
    script.write_text(_KILLED_SAVE.format(tests=str(Path(__file__).parent)))
    run = tmp_path / "run"
    run.mkdir()
    proc = subprocess.run([sys.executable, str(script), str(run), point], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert any(".tmp" in p.name for p in run.iterdir())  # the interrupted write left debris
    found = latest_checkpoint(run)
    assert found is not None and found.name == "ckpt-000001"
    model = Zorro(**tiny_kwargs())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    info = load_training_checkpoint(run, model=model, optimizer=opt)
    assert info["step"] == 1
    want = torch.load(run / "step1.pt", weights_only=True)
    assert all(torch.equal(v, want[k]) for k, v in model.state_dict().items())
    # the resumed run saves step 2 over the debris
    save_training_checkpoint(run, model=model, optimizer=opt, step=2)
    assert latest_checkpoint(run).name == "ckpt-000002"
    assert load_training_checkpoint(run, model=Zorro(**tiny_kwargs()))["step"] == 2
