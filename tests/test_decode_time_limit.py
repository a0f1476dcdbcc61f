"""A decode that hangs costs one counted skip, never a stalled run (per-item time limit)."""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).parent))
import media  # noqa: E402

from zorro.data import ClipDataset, ManifestEntry, SkipTracker, collate_clips, datasets  # noqa: E402
from zorro.data.decode import DecodeError, DecodeTimeout, decode_time_limit  # noqa: E402
from zorro.data.decode import time_limit as time_limit_module  # noqa: E402

HANG = "hang.mp4"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("hang")
    media.make_media(d / "good.mp4", duration=1.0)
    media.make_media(d / HANG, duration=1.0)
    return d


class _SleepyReader(datasets.MediaReader):
    """A MediaReader whose read() never finishes for files named ``hang.mp4``."""

    def read(self, **kwargs):
        if Path(self.path).name == HANG:
            time.sleep(60)
        return super().read(**kwargs)


def _dataset(folder, limit):
    entries = [ManifestEntry(str(folder / "good.mp4"), ("a",)), ManifestEntry(str(folder / HANG), ("b",))] * 2
    return ClipDataset(entries, train=False, duration=0.5, num_frames=2, image_size=16, decode_time_limit=limit)


def test_hanging_decode_is_a_counted_skip_naming_the_file(folder, monkeypatch):
    monkeypatch.setattr(datasets, "MediaReader", _SleepyReader)
    ds = _dataset(folder, 0.3)
    handler_before = signal.getsignal(signal.SIGALRM)
    t0 = time.monotonic()
    item = ds[1]
    assert time.monotonic() - t0 < 5.0
    assert isinstance(item, datasets.Skipped) and item.path == str(folder / HANG)
    assert "0.3 s per-item time limit" in item.reason
    assert ds.num_skipped == 1
    assert isinstance(ds[0], dict)  # the next item decodes normally: no stray alarm
    time.sleep(0.4)
    assert signal.getitimer(signal.ITIMER_REAL)[0] == 0.0
    assert signal.getsignal(signal.SIGALRM) is handler_before


def test_hang_in_a_dataloader_worker_does_not_stall_the_epoch(folder, monkeypatch):
    monkeypatch.setattr(datasets, "MediaReader", _SleepyReader)  # inherited by the forked workers
    ds = _dataset(folder, 0.5)
    loader = DataLoader(ds, batch_size=2, num_workers=1, collate_fn=collate_clips, multiprocessing_context="fork")
    tracker = SkipTracker()
    t0 = time.monotonic()
    kept = 0
    for batch in loader:
        tracker.update(batch)
        kept += len(batch["label"])
    assert time.monotonic() - t0 < 20.0
    assert kept == 2 and tracker.total_skipped == 2
    assert list(tracker.bad_files) == [str(folder / HANG)]
    assert "time limit" in tracker.bad_files[str(folder / HANG)]


def test_time_limit_raises_decode_timeout_and_restores_the_handler():
    before = signal.getsignal(signal.SIGALRM)
    with pytest.raises(DecodeTimeout, match=r"'x\.mp4': decoding took longer than the 0\.2 s") as info:
        with decode_time_limit("x.mp4", 0.2):
            time.sleep(5)
    assert isinstance(info.value, DecodeError) and info.value.seconds == 0.2
    assert signal.getsignal(signal.SIGALRM) is before
    with decode_time_limit("x.mp4", 0.2):  # a fast block: no alarm afterwards
        pass
    time.sleep(0.3)
    with decode_time_limit("x.mp4", None):
        pass
    for bad in (0, -1.0, float("nan"), "5", True):
        with pytest.raises(ValueError, match="positive number of seconds"):
            with decode_time_limit("x.mp4", bad):
                pass
    with pytest.raises(ValueError, match="decode_time_limit"):
        ClipDataset([ManifestEntry("x.mp4", ("a",))], decode_time_limit=-1)


def test_outside_the_main_thread_the_block_runs_without_a_limit_and_says_so(caplog, monkeypatch):
    monkeypatch.setattr(time_limit_module, "_warned_unavailable", False)
    done = []

    def work():
        with decode_time_limit("x.mp4", 0.05):
            time.sleep(0.15)
        done.append(True)

    with caplog.at_level(logging.WARNING, logger="zorro.data.decode.time_limit"):
        for _ in range(2):
            t = threading.Thread(target=work)
            t.start()
            t.join()
    assert done == [True, True]
    assert sum("time limit" in r.getMessage() for r in caplog.records) == 1  # logged once


def test_dataset_items_stay_identical_with_the_limit(folder):
    a = _dataset(folder, None)[0]
    b = _dataset(folder, 30.0)[0]
    assert torch.equal(a["audio"], b["audio"]) and torch.equal(a["video"], b["video"])


class _StuckReader(datasets.MediaReader):
    """A MediaReader whose read() for ``hang.mp4`` behaves like one FFmpeg call that never
    returns: the alarm cannot interrupt it (SIGALRM blocked in this thread)."""

    def read(self, **kwargs):
        if Path(self.path).name == HANG:
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
            time.sleep(60)
        return super().read(**kwargs)


def test_decode_stuck_in_one_call_ends_the_worker_with_an_error_naming_the_file(folder, monkeypatch, tmp_path):
    monkeypatch.setattr(datasets, "MediaReader", _StuckReader)
    monkeypatch.setattr(time_limit_module, "HARD_LIMIT_EXTRA", 0.5)  # watchdog at 2 * 0.3 + 0.5 s
    log = tmp_path / "worker.log"
    handler = logging.FileHandler(log)  # the forked worker inherits it
    logger = logging.getLogger("zorro.data.decode.time_limit")
    logger.addHandler(handler)
    try:
        loader = DataLoader(_dataset(folder, 0.3), batch_size=2, num_workers=1, collate_fn=collate_clips,
                            multiprocessing_context="fork")
        t0 = time.monotonic()
        with pytest.raises(RuntimeError, match="exited unexpectedly"):
            for _ in loader:
                pass
        assert time.monotonic() - t0 < 30.0  # an error, not a stall
    finally:
        logger.removeHandler(handler)
        handler.close()
    text = log.read_text()
    assert str(folder / HANG) in text and "has not returned" in text


def _collect_and_exit():
    import gc

    gc.collect()


def test_a_worker_forked_after_a_decode_in_the_parent_can_free_what_it_inherited(folder):
    """FFmpeg objects left for the garbage collector by a decode in the parent (the audio
    resampler's filter graph sits in a reference cycle) are freed in every forked worker; a
    graph with a thread pool deadlocks (or crashes) there, since the pool's threads were not
    forked. The resampler therefore runs single-threaded."""
    import gc
    import multiprocessing

    gc.disable()  # keep the parent's garbage for the child, as a busy parent would
    try:
        ds = _dataset(folder, None)
        assert isinstance(ds[0], dict)
        child = multiprocessing.get_context("fork").Process(target=_collect_and_exit)
        child.start()
        child.join(30)
        if child.is_alive():
            child.kill()
            child.join()
            pytest.fail("a forked child hung freeing the parent's decoder objects")
        assert child.exitcode == 0
    finally:
        gc.enable()
        gc.collect()
