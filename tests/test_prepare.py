"""Writing prepared shards: prepare_shards, the shard format, restart after SIGKILL, zorro prepare."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest

from media import make_media
from zorro.data.prepare import TEST_PAUSE_ENV, PrepareSettings, PrepareSource, prepare_shards
from zorro.data.shards import format as fmt
from zorro.data.shards.writer import SampleData, ShardWriter, write_samples

# small frames keep the tests fast; the format does not depend on the size
SETTINGS = dict(duration=1.0, num_frames=3, image_size=32, store_size=40, samples_per_shard=2, shard_bytes=None)
LABELS = ["cat", "dog"]


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("prep_media")
    files = {
        "av": make_media(d / "av.mp4", duration=2.0, burst=(1.0, 1.2)),
        "audio_only": make_media(d / "audio_only.mka", container_format="matroska", video_codec=None, duration=1.5),
        "garbage": d / "garbage.mp4",
        "video_only": make_media(d / "video_only.mp4", audio_codec=None, width=48, height=64),
        "long": make_media(d / "long.mp4", duration=3.0),
        "missing": d / "not_there.mp4",
    }
    files["garbage"].write_bytes(np.random.default_rng(1).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    return files


def _sources(media):
    order = [("av", "cat"), ("audio_only", "dog"), ("garbage", "cat"), ("video_only", "dog"), ("long", "cat"), ("missing", "dog")]
    return [PrepareSource(str(media[k]), (lab,), meta={"name": k}) for k, lab in order]


@pytest.fixture(scope="module")
def reference(media, tmp_path_factory):
    out = tmp_path_factory.mktemp("prep_ref") / "out"
    desc = prepare_shards(_sources(media), out, labels=LABELS, workers=1, **SETTINGS)
    return out, desc


def _all_samples(out: Path, desc: dict):
    for sh in desc["shards"]:
        idx = fmt.read_index(out / sh["index"])
        for smp in idx["samples"]:
            yield out / sh["name"], idx, smp


def test_dataset_json_counts_add_up(reference, media):
    out, desc = reference
    on_disk = json.loads((out / "dataset.json").read_text())
    assert on_disk == desc
    for key in ("format", "format_version", "num_samples", "labels", "multi_label", "lists", "shards", "counts", "settings", "versions"):
        assert key in desc, key
    assert desc["format"] == "zorro-shards" and desc["format_version"] == 2 and desc["dry_run"] is False
    assert "unreadable" not in desc and "missing" not in desc  # lists live beside dataset.json (format 2)
    c = desc["counts"]
    assert c["sources"] == 6 and c["written"] == 4 and c["unreadable"] == 2 and c["missing"] == 0
    assert c["written"] + c["unreadable"] + c["missing"] == c["sources"]
    unreadable = list(fmt.iter_list(out, "unreadable"))
    assert {u["path"] for u in unreadable} == {str(media["garbage"]), str(media["missing"])}
    assert all(u["reason"] for u in unreadable) and [u["source"] for u in unreadable] == [2, 5]
    assert (out / "unreadable.jsonl").read_text().count("\n") == 2 and (out / "missing.jsonl").read_text() == ""
    assert desc["num_samples"] == c["samples"] == sum(s["num_samples"] for s in desc["shards"])
    # centre window: one sample per readable file
    assert desc["num_samples"] == 4
    assert [s["name"] for s in desc["shards"]] == [fmt.shard_name(i) for i in range(len(desc["shards"]))]
    for sh in desc["shards"]:
        assert (out / sh["name"]).stat().st_size == sh["bytes"]
    assert desc["settings"]["store_size"] == 40 and desc["settings"]["window"] == "centre"
    assert {"zorro", "torch", "av", "python"} <= set(desc["versions"])
    assert not list(out.glob("*.tmp"))


def test_samples_members_and_json(reference, media):
    out, desc = reference
    seen = {}
    for k, (tar, idx, smp) in enumerate(_all_samples(out, desc)):
        assert smp["key"] == fmt.sample_key(k)
        m = fmt.read_members(tar, smp)
        info = json.loads(m["json"])
        seen[info["meta"]["name"]] = (info, m)
        assert info["labels"] == [LABELS[i] for i in info["label_ids"]]
        frames = sorted(s for s in m if fmt.is_frame_suffix(s))
        assert info["num_frames"] == len(frames) == (3 if info["has_video"] else 0)
        assert ("wav" in m) == info["has_audio"]
        if info["has_audio"]:
            wave = fmt.decode_audio(m["wav"], "wav")
            assert wave.dtype == np.float32 and wave.shape == (round((info["end"] - info["start"]) * 16000),)
        for s in frames:
            img = fmt.decode_jpeg(m[s])
            assert min(img.shape[:2]) == 40 and (img.shape[1], img.shape[0]) == (info["width"], info["height"])
    assert set(seen) == {"av", "audio_only", "video_only", "long"}
    assert not seen["audio_only"][0]["has_video"] and seen["audio_only"][0]["width"] == 0
    assert not seen["video_only"][0]["has_audio"]
    # aspect ratio kept: 64x48 -> 53x40, 48x64 (portrait) -> 40x53
    assert (seen["av"][0]["width"], seen["av"][0]["height"]) == (53, 40)
    assert (seen["video_only"][0]["width"], seen["video_only"][0]["height"]) == (40, 53)
    # centred window in the 3 s file
    assert seen["long"][0]["start"] == pytest.approx(1.0, abs=0.05) and seen["long"][0]["end"] - seen["long"][0]["start"] == 1.0
    # the picture survives: left quarter red, rest grey (see tests/media.py)
    img = fmt.decode_jpeg(seen["av"][1]["000.jpg"]).astype(int)
    assert img[:, :8, 0].mean() > 200 and abs(img[:, 30:, 0].mean() - img[:, 30:, 1].mean()) < 12


def test_index_offsets_point_at_member_bytes(reference):
    out, desc = reference
    for sh in desc["shards"]:
        idx = fmt.read_index(out / sh["index"])
        # the label ids of every sample come before the member table, readable from the file's head
        head = fmt.read_index_head(out / sh["index"], chunk=64)
        assert "samples" not in head and head["label_ids"] == idx["label_ids"]
        assert head["label_ids"] == [json.loads(fmt.read_members(out / sh["name"], smp, ["json"])["json"])["label_ids"]
                                     for smp in idx["samples"]]
        with tarfile.open(out / sh["name"]) as tar:
            members = {ti.name: ti for ti in tar.getmembers()}
            expected = {}
            for smp in idx["samples"]:
                for suffix, (off, size) in smp["members"].items():
                    ti = members[f"{smp['key']}.{suffix}"]
                    assert (ti.offset_data, ti.size) == (off, size)
                    expected[ti.name] = tar.extractfile(ti).read()
            assert len(expected) == len(members)
            assert all(ti.mtime == 0 and ti.uid == 0 and ti.mode == 0o644 for ti in members.values())
        raw = (out / sh["name"]).read_bytes()
        for smp in idx["samples"]:
            got = fmt.read_members(out / sh["name"], smp)
            for suffix, data in got.items():
                assert data == expected[f"{smp['key']}.{suffix}"]
                off, size = smp["members"][suffix]
                assert raw[off : off + size] == data


def test_webdataset_reads_shards(reference):
    wds = pytest.importorskip("webdataset")
    out, desc = reference
    urls = [str(out / s["name"]) for s in desc["shards"]]
    got = list(wds.WebDataset(urls, shardshuffle=False))
    assert [s["__key__"] for s in got] == [fmt.sample_key(i) for i in range(desc["num_samples"])]
    for s in got:
        info = json.loads(s["json"])
        suffixes = {k for k in s if not k.startswith("__")}
        want = {"json"} | ({"wav"} if info["has_audio"] else set()) | {fmt.frame_suffix(i) for i in range(info["num_frames"])}
        assert suffixes == want
    decoded = list(wds.WebDataset(urls, shardshuffle=False).decode("rgb8"))
    frame = next(s["000.jpg"] for s in decoded if "000.jpg" in s)
    assert frame.dtype == np.uint8 and frame.shape[2] == 3 and min(frame.shape[:2]) == 40


def test_byte_reproducible_with_a_worker_pool(reference, media, tmp_path):
    out, desc = reference
    again = prepare_shards(_sources(media), tmp_path / "out", labels=LABELS, workers=2, **SETTINGS)
    assert again["shards"] == desc["shards"]
    for sh in desc["shards"]:
        assert (tmp_path / "out" / sh["name"]).read_bytes() == (out / sh["name"]).read_bytes()
        assert (tmp_path / "out" / sh["index"]).read_bytes() == (out / sh["index"]).read_bytes()


_CHILD = """
import json, sys
from zorro.data.prepare import PrepareSource, prepare_shards
spec = json.loads(sys.argv[1])
srcs = [PrepareSource(p, tuple(l), meta=m) for p, l, m in spec["sources"]]
prepare_shards(srcs, spec["out"], labels=spec["labels"], workers=1, **spec["settings"])
"""


@pytest.mark.slow
def test_sigkill_then_restart_finishes_without_redecoding(reference, media, tmp_path, monkeypatch):
    ref_out, ref_desc = reference
    out = tmp_path / "out"
    srcs = _sources(media)
    spec = {"sources": [[s.path, list(s.labels), dict(s.meta)] for s in srcs], "out": str(out), "labels": LABELS, "settings": SETTINGS}
    env = {**os.environ, TEST_PAUSE_ENV: "1.0"}  # shard 1's .tmp then lives >= 2 s: time to see and kill
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, json.dumps(spec)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    try:
        while not ((out / fmt.index_name(0)).exists() and (out / (fmt.shard_name(1) + ".tmp")).exists()):
            if proc.poll() is not None:
                pytest.fail(f"prepare ended before it could be killed: {proc.stderr.read().decode()[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail("shard 0 never finished")
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (out / (fmt.shard_name(1) + ".tmp")).exists()  # killed mid-shard: a partial file is there
    assert not (out / "dataset.json").exists()
    first = fmt.read_index(out / fmt.index_name(0))
    stat0 = (out / fmt.shard_name(0)).stat()

    import zorro.data.prepare as prep

    decoded = []
    real = prep._decode_source

    def counting(i, src, s, vocab):
        decoded.append(i)
        return real(i, src, s, vocab)

    monkeypatch.setattr(prep, "_decode_source", counting)
    desc = prepare_shards(srcs, out, labels=LABELS, workers=1, **SETTINGS)
    assert decoded == list(range(first["source_end"], len(srcs)))  # finished shard's sources not decoded again
    after = (out / fmt.shard_name(0)).stat()
    assert (after.st_ino, after.st_mtime_ns) == (stat0.st_ino, stat0.st_mtime_ns)
    assert not list(out.glob("*.tmp"))
    assert desc["counts"] == ref_desc["counts"] and desc["shards"] == ref_desc["shards"]
    for sh in ref_desc["shards"]:
        assert (out / sh["name"]).read_bytes() == (ref_out / sh["name"]).read_bytes()
    # a third run finds everything finished and decodes nothing
    decoded.clear()
    assert prepare_shards(srcs, out, labels=LABELS, workers=1, **SETTINGS)["shards"] == ref_desc["shards"]
    assert decoded == []


def test_other_settings_in_the_same_folder_are_refused(reference, media):
    out, _ = reference
    with pytest.raises(ValueError, match="jpeg_quality"):
        prepare_shards(_sources(media), out, labels=LABELS, workers=1, **{**SETTINGS, "jpeg_quality": 50})


def test_windows_flac_missing_and_extra(media, tmp_path):
    srcs = [PrepareSource(str(media["long"]), ("cat", "dog"), start=0.5, end=3.0), PrepareSource(str(media["av"]), ())]
    desc = prepare_shards(
        srcs, tmp_path / "o", labels=LABELS, multi_label=True, missing=[{"ytid": "abc"}], extra_info={"why": "test"},
        workers=1, window="even:3", audio_format="flac", video=False, duration=1.0, shard_bytes=10**6,
    )
    c = desc["counts"]
    assert (c["sources"], c["written"], c["unreadable"], c["missing"]) == (3, 2, 0, 1)
    assert list(fmt.iter_list(tmp_path / "o", "missing")) == [{"ytid": "abc"}] and desc["extra"] == {"why": "test"} and desc["multi_label"]
    infos = []
    for tar, _, smp in _all_samples(tmp_path / "o", desc):
        m = fmt.read_members(tar, smp)
        assert set(m) == {"json", "flac"}
        info = json.loads(m["json"])
        infos.append(info)
        assert fmt.decode_audio(m["flac"], "flac").shape == (16000,)
    long_starts = [i["start"] for i in infos if i["path"] == str(media["long"])]
    assert long_starts == pytest.approx([0.5, 1.25, 2.0], abs=1e-6)  # even:3 inside [0.5, 3.0)
    assert infos[0]["label_ids"] == [0, 1]
    # the 2 s file has 1 s of slack: three windows 0.5 s apart as well
    assert len(infos) == 6 and [i["start"] for i in infos[3:]] == pytest.approx([0.0, 0.5, 1.0], abs=1e-6)


def test_manifest_window_and_bad_arguments(media, tmp_path):
    srcs = [PrepareSource(str(media["long"]), ("cat",), start=0.25, end=1.75)]
    desc = prepare_shards(srcs, tmp_path / "o", labels=LABELS, workers=1, window="manifest", num_frames=2, store_size=36, image_size=32)
    (tar, _, smp), = list(_all_samples(tmp_path / "o", desc))
    info = json.loads(fmt.read_members(tar, smp, ["json"])["json"])
    assert (info["start"], info["end"], info["num_frames"], info["fps"]) == (0.25, 1.75, 2, pytest.approx(2 / 1.5))
    with pytest.raises(ValueError, match="not in labels"):
        prepare_shards([PrepareSource(str(media["av"]), ("bird",))], tmp_path / "x", labels=LABELS, workers=1)
    with pytest.raises(ValueError, match="exactly one"):
        prepare_shards([PrepareSource(str(media["av"]), ("cat", "dog"))], tmp_path / "x", labels=LABELS, workers=1)
    with pytest.raises(ValueError, match="window"):
        PrepareSettings(window="even:0")
    with pytest.raises(ValueError, match="store_size"):
        PrepareSettings(image_size=224, store_size=200)
    with pytest.raises(TypeError, match="unknown prepare settings"):
        prepare_shards([], tmp_path / "x", labels=LABELS, frames=3)


def test_member_codecs_reject_damage(tmp_path):
    x = np.sin(np.linspace(0, 100, 4000)).astype(np.float32) * 0.7
    wav, flac = fmt.encode_audio(x, 16000, "wav"), fmt.encode_audio(x, 16000, "flac")
    np.testing.assert_array_equal(fmt.decode_audio(wav, "wav"), fmt.decode_audio(flac, "flac"))
    np.testing.assert_allclose(fmt.decode_audio(wav, "wav"), x, atol=1 / 32767)
    assert fmt.encode_audio(x, 16000, "flac") == flac  # deterministic
    with pytest.raises(ValueError, match="truncated"):
        fmt.decode_audio(wav[:-10], "wav")
    with pytest.raises(ValueError):
        fmt.decode_audio(b"RIFF\x00\x00", "wav")
    with pytest.raises(ValueError):
        fmt.decode_jpeg(fmt.encode_jpeg(np.zeros((8, 8, 3), np.uint8))[:20])
    # a truncated shard: pread past the end is reported, not returned short
    desc = write_samples(tmp_path / "w", [SampleData(("a",), audio=x)], labels=["a"])
    tar = tmp_path / "w" / desc["shards"][0]["name"]
    idx = fmt.read_index(tmp_path / "w" / desc["shards"][0]["index"])
    off, size = idx["samples"][0]["members"]["wav"]
    os.truncate(tar, off + size // 2)
    with pytest.raises(ValueError, match="truncated"):
        fmt.read_members(tar, idx["samples"][0])


def test_shard_writer_abort_leaves_nothing(tmp_path):
    w = ShardWriter(tmp_path, 0)
    w.add("s000000000", [("json", b"{}")])
    w.abort()
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="key"):
        ShardWriter(tmp_path, 1).add("a.b", [("json", b"{}")])


def test_cli_prepare_folder_tree(media, tmp_path):
    from zorro.cli import main

    for cls, key in (("cat", "av"), ("dog", "video_only")):
        (tmp_path / "tree" / cls).mkdir(parents=True)
        os.link(media[key], tmp_path / "tree" / cls / Path(media[key]).name)
    rc = main(["prepare", "--manifest", str(tmp_path / "tree"), "--out", str(tmp_path / "out"), "--workers", "1",
               "--store-size", "36", "--image-size", "32", "--num-frames", "2", "--duration", "1", "--shard-samples", "1"])
    assert rc == 0
    desc = fmt.read_dataset_json(tmp_path / "out")
    assert desc["labels"] == ["cat", "dog"] and desc["num_samples"] == 2 and len(desc["shards"]) == 2
    assert desc["settings"]["store_size"] == 36 and desc["settings"]["samples_per_shard"] == 1 and desc["settings"]["shard_bytes"] is None
    # a CSV manifest with a broken row's file: counted, exit code 0 while something was written
    (tmp_path / "m.csv").write_text(f"path,label\n{media['av']},cat\n{media['garbage']},dog\n")
    assert main(["prepare", "--manifest", str(tmp_path / "m.csv"), "--out", str(tmp_path / "o2"), "--workers", "1", "--no-video"]) == 0
    assert fmt.read_dataset_json(tmp_path / "o2")["counts"]["unreadable"] == 1
    assert main(["prepare", "--out", str(tmp_path / "o3")]) == 1  # no --manifest and no dataset command


def test_worker_death_and_unexpected_errors_name_the_file(media, tmp_path, monkeypatch):
    import zorro.data.prepare as prep

    real = prep._decode_source
    srcs = _sources(media)

    def dies_on_long(i, src, s, vocab):
        if src.path == str(media["long"]):
            os._exit(3)  # a crashing decoder (forked workers inherit this patch)
        return real(i, src, s, vocab)

    monkeypatch.setattr(prep, "_decode_source", dies_on_long)
    with pytest.raises(RuntimeError, match="worker process died"):
        prepare_shards(srcs, tmp_path / "a", labels=LABELS, workers=2, **SETTINGS)
    assert not list((tmp_path / "a").glob("*.tmp")) and not (tmp_path / "a" / "dataset.json").exists()

    def raises_on_long(i, src, s, vocab):
        if src.path == str(media["long"]):
            raise KeyError("boom")
        return real(i, src, s, vocab)

    monkeypatch.setattr(prep, "_decode_source", raises_on_long)
    with pytest.raises(RuntimeError, match="long.mp4.*KeyError"):
        prepare_shards(srcs, tmp_path / "b", labels=LABELS, workers=1, **SETTINGS)
    assert not list((tmp_path / "b").glob("*.tmp"))
    assert (tmp_path / "b" / fmt.index_name(0)).exists()  # shards finished before the error stay


def test_two_runs_on_one_folder_are_refused(media, tmp_path):
    import fcntl

    from zorro.data.prepare import LOCK_FILE

    out = tmp_path / "o"
    out.mkdir()
    with open(out / LOCK_FILE, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # as a concurrent prepare holds it
        with pytest.raises(ValueError, match="another zorro prepare"):
            prepare_shards(_sources(media)[:1], out, labels=LABELS, workers=1, **SETTINGS)
    assert prepare_shards(_sources(media)[:1], out, labels=LABELS, workers=1, **SETTINGS)["num_samples"] == 1


def test_very_wide_pictures_are_centre_cropped(tmp_path):
    from zorro.data.prepare import MAX_ASPECT

    wide = make_media(tmp_path / "wide.mp4", width=256, height=32, audio_codec=None, duration=1.0)
    desc = prepare_shards([PrepareSource(str(wide), ("cat",))], tmp_path / "o", labels=LABELS, workers=1, **SETTINGS)
    (tar, _, smp), = list(_all_samples(tmp_path / "o", desc))
    m = fmt.read_members(tar, smp)
    info = json.loads(m["json"])
    assert (info["width"], info["height"]) == (int(MAX_ASPECT * 40), 40)
    img = fmt.decode_jpeg(m["000.jpg"]).astype(int)
    assert img[:, :10, 0].mean() < 100  # the red left quarter was cropped away: grey at the left edge


def test_windows_past_the_data_are_listed_not_lost(tmp_path):
    from media import truncate

    full = make_media(tmp_path / "a.webm", video_codec="libvpx-vp9", audio_codec="libopus", sample_rate=48000, duration=3.0)
    cut = truncate(full, tmp_path / "cut.webm", 0.4)  # the header still says 3 s
    desc = prepare_shards([PrepareSource(str(cut), ("cat",))], tmp_path / "o", labels=LABELS, workers=1,
                          **{**SETTINGS, "window": "even:3", "duration": 0.5})
    assert desc["num_samples"] == 1 and desc["counts"]["written"] == 1 and desc["counts"]["skipped_windows"] == 2
    skipped = list(fmt.iter_list(tmp_path / "o", "skipped_windows"))
    assert [w["window"] for w in skipped] == [1, 2]
    assert all(w["path"] == str(cut) and "nothing decodable" in w["reason"] for w in skipped)


def test_foreign_shard_files_are_not_touched(media, tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "shard-000000.tar").write_bytes(b"someone else's data")
    for _ in range(2):  # and a second try is refused as well
        with pytest.raises(ValueError, match="did not write"):
            prepare_shards(_sources(media)[:1], out, labels=LABELS, workers=1, **SETTINGS)
    assert (out / "shard-000000.tar").read_bytes() == b"someone else's data"
