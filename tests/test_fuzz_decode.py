"""Damaged media through read_clip: a seeded fuzz campaign (tests/fuzz_decode.py) must end
every case in a clip or a DecodeError, with no other exception, crash or hang."""

from __future__ import annotations

import faulthandler
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import fuzz_decode  # noqa: E402

CASES = 770  # 10 per (seed file, mutation kind) pair: 11 seed files x 7 kinds
TIME_LIMIT = 10.0  # s per case; the 10,000-case campaign's slowest case is far below


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    return fuzz_decode.build_seeds(tmp_path_factory.mktemp("fuzz_seeds"))


def test_seed_files_decode_undamaged(seeds):
    from zorro.data import read_clip

    for name, path in seeds.items():
        clip = read_clip(path, duration=1.0, num_frames=4, image_size=32)
        assert clip.has_audio, name
        assert clip.has_video == (name not in ("wav", "flac", "mp3", "ogg", "opus")), name


@pytest.mark.parametrize("kind", fuzz_decode.KINDS)
def test_mutations_are_seeded_and_change_the_file(kind):
    data = bytes(range(256)) * 40
    a = fuzz_decode.mutate(data, kind, np.random.default_rng(7))
    b = fuzz_decode.mutate(data, kind, np.random.default_rng(7))
    assert a == b  # a case replays exactly from its seed
    assert a != data
    with pytest.raises(ValueError, match="mutation kind"):
        fuzz_decode.mutate(data, "bogus", np.random.default_rng(0))


@pytest.mark.slow
def test_fuzz_campaign_ends_every_case_in_a_clip_or_decode_error(seeds):
    cases = fuzz_decode.make_cases(sorted(seeds), CASES, base_seed=1_000_000)
    assert {c.kind for c in cases} == set(fuzz_decode.KINDS)
    assert {c.seed_name for c in cases} == set(seeds)
    report = fuzz_decode.run_campaign(cases, seeds, workers=2, time_limit=TIME_LIMIT)
    assert report.total == CASES
    # the campaign exercises both ends: clips (some recovered) and DecodeErrors
    assert report.outcomes["ok"] + report.outcomes["recovered"] > 0
    assert report.outcomes["recovered"] > 0 and report.outcomes["DecodeError"] > 0
    assert not report.defects, report.format()
    assert max(report.times) < TIME_LIMIT


def _misbehaving_runner(case, seeds, workdir):
    """A case runner that crashes, hangs or raises on purpose (by seed name)."""
    rec = {"case": case.key, "kind": case.kind, "seed_name": case.seed_name, "seconds": 0.0}
    if case.seed_name == "crash":
        faulthandler.disable()  # no traceback dump from the worker into the test log
        os.kill(os.getpid(), signal.SIGSEGV)
    if case.seed_name == "hang":
        time.sleep(60)
    if case.seed_name == "other":
        return dict(rec, outcome="other", detail="KeyError: 'x'")
    return dict(rec, outcome="ok")


def test_harness_reports_crashes_and_hangs_and_keeps_going():
    names = ["fine", "crash", "fine", "hang", "other", "fine"]
    cases = [fuzz_decode.Case(n, "flip", i) for i, n in enumerate(names)]
    report = fuzz_decode.run_campaign(cases, {}, workers=2, time_limit=1.5, runner=_misbehaving_runner)
    assert report.total == len(names)
    assert report.outcomes == {"ok": 3, "crash": 1, "hang": 1, "other": 1}
    by_case = {r["case"]: r for r in report.defects}
    assert "SIGSEGV" in by_case["crash:flip:1"]["detail"]
    assert by_case["hang:flip:3"]["outcome"] == "hang"
    assert "hang" in report.format() and "crash" in report.format()
