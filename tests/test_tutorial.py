"""docs/tutorial.md works as written: every ``zorro`` command of its ``bash`` blocks runs, in
order, on a tiny generated dataset laid out as the tutorial's ``my_speech`` folder, with a
stand-in for the demo's backbone (the demo's architecture, untrained). Training is cut to
one short epoch by ``--set`` options appended to each ``zorro train`` command; nothing else
of the commands is changed.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from speech_toy import make_speech_dataset
from zorro.cli import main

TUTORIAL = Path(__file__).resolve().parents[1] / "docs" / "tutorial.md"

#: appended to commands so the suite stays fast (later --set options win)
FAST = {"train": ["--set", "optim.epochs=1", "--set", "data.batch_size=6", "--set", "data.num_workers=0", "--set", "run.progress=false"],
        "evaluate": ["--num-workers", "0"], "embed": ["--num-workers", "0"], "audio-stats": ["--num-workers", "0"]}


def tutorial_commands(text: str) -> list[list[str]]:
    """The ``zorro`` commands of the ``bash`` code blocks of ``text``, in order, as argv lists
    (without the leading ``zorro``); ``\\`` line continuations joined, comments dropped."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            words = shlex.split(line, comments=True)
            if words and words[0] == "zorro":
                commands.append(words[1:])
    return commands


def test_the_tutorial_has_the_commands_it_promises():
    commands = tutorial_commands(TUTORIAL.read_text())
    names = [c[0] for c in commands]
    assert names.count("train") >= 2 and {"audio-stats", "evaluate", "embed"} <= set(names)
    assert any("--init-from" in c and "runs/demo/pretrain" in c for c in commands)  # starts from the demo's backbone


def test_the_tutorial_runs_on_a_small_dataset(tmp_path, monkeypatch, capsys):
    from zorro import Zorro
    from zorro.recipes.avdigits_demo import DEMO_SETTINGS

    make_speech_dataset(tmp_path / "my_speech", per_class=6)
    Zorro(**DEMO_SETTINGS["model"], audio_mean=-4.77, audio_std=3.74).save_pretrained(str(tmp_path / "runs" / "demo" / "pretrain" / "model"))
    monkeypatch.chdir(tmp_path)
    for argv in tutorial_commands(TUTORIAL.read_text()):
        capsys.readouterr()
        assert main(argv + FAST.get(argv[0], [])) == 0, argv
        if argv[0] == "audio-stats":
            stats = json.loads(capsys.readouterr().out)
            assert stats["sample_rate"] == 16000 and stats["clip_seconds"]["max"] <= 1.0
    run = tmp_path / "runs" / "my_speech"
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["init_from"] == str(tmp_path / "runs" / "demo" / "pretrain")
    assert config["data"]["duration"] == 1.0 and config["data"]["sample_rate"] == 16000
    assert (run / "eval" / "test" / "confusion" / "audio_only.png").exists()
    assert (tmp_path / "emb" / "my_speech.safetensors").exists() and (tmp_path / "emb" / "my_speech.index.json").exists()
    assert (tmp_path / "runs" / "my_speech_scratch" / "heads.safetensors").exists()
