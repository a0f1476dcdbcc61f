"""save_pretrained / from_pretrained, strict loading, old formats, no pickle, Hub, convert CLI."""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import shutil
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import tiny_kwargs
from zorro import TokenTypes, Zorro, ZorroConfig
from zorro.cli import main as cli_main
from zorro.hub import (
    FORMAT_VERSION,
    UnsafeCheckpointError,
    WeightsMismatchError,
    load_state_dict_file,
    push_to_hub,
    read_config,
    upgrade_config,
)
from zorro.reference import DenseZorro

FIXTURE_V0 = Path(__file__).parent / "fixtures" / "config_v0"


def make(**overrides) -> Zorro:
    return Zorro(**tiny_kwargs(**overrides)).eval()


def inputs(batch=2, samples=4000):
    g = torch.Generator().manual_seed(7)
    return torch.rand(batch, samples, generator=g) - 0.5, torch.randn(batch, 3, 4, 16, 16, generator=g)


@pytest.fixture(autouse=True)
def _quiet_crop_warning():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="audio features of shape")
        yield


class ArmedPickle:
    """Unpickling this creates the directory ``marker`` -- i.e. it runs code."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


# --------------------------------------------------------------------------- round trip


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        dict(audio_frontend="spectrogram", spec_n_fft=32, pos_embed="none", audio_patch_size=(8, 4),
             return_token_types=(TokenTypes.GLOBAL, TokenTypes.AUDIO), audio_mean=-3.5, audio_std=2.25, ff_mult=2.5),
    ],
    ids=["default", "non-default-options"],
)
def test_round_trip_is_bit_exact(tmp_path, overrides):
    model = make(**overrides)
    a, v = inputs()
    with torch.no_grad():
        expected = model(audio=a, video=v)
    model.save_pretrained(str(tmp_path / "m"))
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "model.safetensors"]
    doc = json.loads((tmp_path / "m" / "config.json").read_text())
    # an audio-video model without a modality table is written as format 1, which every zorro reads
    assert doc["format_version"] == 1 and doc["model_type"] == "zorro" and doc["library"] == "zorro"
    assert set(doc["config"]) == {f.name for f in dataclasses.fields(ZorroConfig)} - {"modalities"}  # every constructor option

    loaded = Zorro.from_pretrained(str(tmp_path / "m"))
    assert not loaded.training
    assert loaded.config == model.config
    with torch.no_grad():
        got = loaded(audio=a, video=v)
    assert torch.equal(got, expected)  # bit-equal
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_files_are_world_readable_and_no_temporaries_left(tmp_path):
    make().save_pretrained(str(tmp_path))
    for p in tmp_path.iterdir():
        assert not p.name.startswith("."), p
        assert p.stat().st_mode & 0o044, f"{p} is not group/other readable"


def test_half_precision_round_trip_keeps_dtype(tmp_path):
    model = make().half()
    model.save_pretrained(str(tmp_path))
    loaded = Zorro.from_pretrained(str(tmp_path))
    assert loaded.blocks[0].attn.to_qkv.weight.dtype == torch.float16
    assert torch.equal(loaded.blocks[0].attn.to_qkv.weight, model.blocks[0].attn.to_qkv.weight)
    assert Zorro.from_pretrained(str(tmp_path), dtype=torch.float32).norm.weight.dtype == torch.float32


def test_runtime_override_allowed_architecture_override_refused(tmp_path):
    model = make()
    model.save_pretrained(str(tmp_path))
    eager = Zorro.from_pretrained(str(tmp_path), attn_backend="eager")
    assert eager.attn_backend == "eager"
    a, v = inputs()
    with torch.no_grad():
        torch.testing.assert_close(eager(audio=a, video=v), model(audio=a, video=v), atol=1e-5, rtol=1e-5)
    with pytest.raises(TypeError, match="dim"):
        Zorro.from_pretrained(str(tmp_path), dim=64)
    with pytest.raises(ValueError, match="attn_backend"):
        Zorro.from_pretrained(str(tmp_path), attn_backend="fast")


# --------------------------------------------------------------------------- strict loading


def test_missing_and_unexpected_keys_are_listed(tmp_path):
    make().save_pretrained(str(tmp_path))
    weights = load_file(str(tmp_path / "model.safetensors"))
    del weights["norm.weight"]
    weights["blocks.9.attn.extra"] = torch.zeros(3)
    save_file(weights, str(tmp_path / "model.safetensors"))
    with pytest.raises(WeightsMismatchError) as err:
        Zorro.from_pretrained(str(tmp_path))
    assert "missing keys (1): ['norm.weight']" in str(err.value)
    assert "unexpected keys (1): ['blocks.9.attn.extra']" in str(err.value)


def test_shape_mismatch_is_listed(tmp_path):
    make().save_pretrained(str(tmp_path))
    doc = json.loads((tmp_path / "config.json").read_text())
    doc["config"]["dim_head"] = 8  # to_qkv / to_out / pool projections change shape
    (tmp_path / "config.json").write_text(json.dumps(doc))
    with pytest.raises(WeightsMismatchError, match=r"shape mismatches .*blocks\.0\.attn\.to_qkv\.weight: checkpoint .*\(96, 32\) vs model \(48, 32\)"):
        Zorro.from_pretrained(str(tmp_path))


def test_unknown_config_option_and_missing_files(tmp_path):
    make().save_pretrained(str(tmp_path))
    doc = json.loads((tmp_path / "config.json").read_text())
    doc["config"]["dropout"] = 0.1
    (tmp_path / "config.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="dropout"):
        Zorro.from_pretrained(str(tmp_path))
    (tmp_path / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="config.json"):
        Zorro.from_pretrained(str(tmp_path))
    with pytest.raises(FileNotFoundError):
        Zorro.from_pretrained(str(tmp_path / "nowhere" / "x"))


# --------------------------------------------------------------------------- older formats


def test_format_v0_fixture_loads_and_computes_what_it_computed():
    raw = json.loads((FIXTURE_V0 / "config.json").read_text())
    assert "format_version" not in raw and raw["return_token_types"] == [0, 1, 2]  # really the old format
    model = Zorro.from_pretrained(str(FIXTURE_V0))
    c = model.config
    assert c.audio_frontend == "spectrogram" and c.pos_embed == "none"  # 0.0.x semantics, not today's defaults
    assert c.return_token_types == (TokenTypes.AUDIO, TokenTypes.VIDEO, TokenTypes.FUSION)
    assert (c.dim, c.depth, c.heads, c.dim_head, c.spec_n_fft, c.spec_win_length) == (8, 1, 2, 4, 16, 12)
    expected = load_file(str(FIXTURE_V0 / "expected.safetensors"))
    with torch.no_grad():
        got = model(audio=expected["audio"], video=expected["video"])
    # 1e-5: the thread count changes float32 reduction order (1 thread differs by 2e-6 from the
    # 2 threads that wrote the fixture); a wrong format reading differs by orders of magnitude more.
    torch.testing.assert_close(got, expected["output"], atol=1e-5, rtol=1e-5)


def test_v0_resaved_as_current_format(tmp_path):
    model = Zorro.from_pretrained(str(FIXTURE_V0))
    model.save_pretrained(str(tmp_path))
    assert json.loads((tmp_path / "config.json").read_text())["format_version"] == 1  # audio-video: format 1
    assert read_config(tmp_path) == read_config(FIXTURE_V0)


def test_upgrade_config_refuses_newer_and_foreign():
    with pytest.raises(ValueError, match="newer zorro"):
        upgrade_config({"format_version": FORMAT_VERSION + 1, "config": {}})
    with pytest.raises(ValueError, match="not a Zorro config"):
        upgrade_config({"format_version": 1, "model_type": "bert", "config": {}})
    with pytest.raises(TypeError):
        upgrade_config([1, 2])


# --------------------------------------------------------------------------- no pickle, ever


def test_armed_pickle_really_runs_code_when_unpickled(tmp_path):
    """Control: the payload used below does execute when unpickled the unsafe way."""
    marker = tmp_path / "control-ran"
    pickle.loads(pickle.dumps(ArmedPickle(marker)))
    assert marker.exists()


def test_pickle_only_folder_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    folder = tmp_path / "model"
    folder.mkdir()
    make().save_pretrained(str(folder))
    (folder / "model.safetensors").unlink()
    torch.save({"norm.weight": torch.ones(32), "payload": ArmedPickle(marker)}, folder / "pytorch_model.bin")
    with pytest.raises(UnsafeCheckpointError, match="never unpickles"):
        Zorro.from_pretrained(str(folder))
    for name in ("pytorch_model.bin",):
        with pytest.raises(UnsafeCheckpointError):
            Zorro.from_pretrained(str(folder / name))
    assert not marker.exists()


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".ckpt", ".bin"])
def test_weights_only_reader_refuses_armed_pickle(tmp_path, suffix):
    marker = tmp_path / "pwned"
    path = tmp_path / f"weights{suffix}"
    torch.save({"w": torch.zeros(2), "payload": ArmedPickle(marker)}, path)
    with pytest.raises(UnsafeCheckpointError, match="refused without running"):
        load_state_dict_file(path)
    assert not marker.exists()


def test_safetensors_wins_over_a_pickle_beside_it(tmp_path):
    marker = tmp_path / "pwned"
    model = make()
    model.save_pretrained(str(tmp_path))
    torch.save({"payload": ArmedPickle(marker)}, tmp_path / "pytorch_model.bin")
    Zorro.from_pretrained(str(tmp_path))
    assert not marker.exists()


def test_plain_state_dict_pickle_is_read_weights_only(tmp_path):
    state = {"a": torch.arange(3.0), "b": torch.ones(2, 2)}
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, tmp_path / "x.ckpt")
    got = load_state_dict_file(tmp_path / "x.ckpt")
    assert sorted(got) == ["a", "b"] and torch.equal(got["a"], state["a"])


# --------------------------------------------------------------------------- Hugging Face Hub (no network)


@pytest.fixture
def fake_hub(tmp_path, monkeypatch):
    """Replace the network parts of huggingface_hub with a folder per repo id."""
    hf = pytest.importorskip("huggingface_hub")
    from huggingface_hub.errors import EntryNotFoundError

    remote = tmp_path / "remote"
    calls = []

    def hf_hub_download(repo_id, filename, **kwargs):
        calls.append(("download", repo_id, filename, kwargs.get("revision")))
        path = remote / repo_id / filename
        if not path.is_file():
            raise EntryNotFoundError(f"{filename} not in {repo_id}")
        return str(path)

    class FakeApi:
        def __init__(self, token=None):
            self.token = token

        def create_repo(self, repo_id, **kwargs):
            calls.append(("create", repo_id))
            return type("RepoUrl", (), {"repo_id": repo_id})()

        def upload_folder(self, *, repo_id, folder_path, **kwargs):
            calls.append(("upload", repo_id, sorted(p.name for p in Path(folder_path).iterdir())))
            shutil.copytree(folder_path, remote / repo_id, dirs_exist_ok=True)
            return type("CommitInfo", (), {"commit_url": f"https://hub.invalid/{repo_id}/commit/1"})()

    import huggingface_hub.hub_mixin as mixin

    for module in (hf, mixin):
        monkeypatch.setattr(module, "hf_hub_download", hf_hub_download)
        monkeypatch.setattr(module, "HfApi", FakeApi)
    return calls


def test_push_to_hub_and_from_pretrained_repo_id(fake_hub):
    model = make()
    url = push_to_hub(model, "someone/zorro-tiny", model_card_kwargs={"dataset": "toy"})
    assert url.endswith("/commit/1")
    assert ("upload", "someone/zorro-tiny", ["README.md", "config.json", "model.safetensors"]) in fake_hub
    loaded = Zorro.from_pretrained("someone/zorro-tiny", revision="main")
    assert ("download", "someone/zorro-tiny", "model.safetensors", "main") in fake_hub
    a, v = inputs()
    with torch.no_grad():
        assert torch.equal(loaded(audio=a, video=v), model(audio=a, video=v))


def test_hub_repo_without_safetensors_is_refused(fake_hub, tmp_path):
    remote = tmp_path / "remote" / "someone" / "old"
    remote.mkdir(parents=True)
    (remote / "config.json").write_text(json.dumps({"format_version": 1, "config": tiny_kwargs(return_token_types=["AUDIO"])}))
    with pytest.raises(UnsafeCheckpointError, match="pickle"):
        Zorro.from_pretrained("someone/old")


def test_pytorch_model_hub_mixin_subclass_uses_zorro_format(fake_hub, tmp_path):
    hf = pytest.importorskip("huggingface_hub")

    class HubZorro(Zorro, hf.PyTorchModelHubMixin, library_name="zorro"):
        pass

    model = HubZorro(**tiny_kwargs()).eval()
    model.push_to_hub("someone/mixin")  # the mixin's push_to_hub -> our save_pretrained
    assert json.loads((tmp_path / "remote" / "someone" / "mixin" / "config.json").read_text())["format_version"] == 1
    loaded = HubZorro.from_pretrained("someone/mixin")
    assert isinstance(loaded, HubZorro)
    a, v = inputs()
    with torch.no_grad():
        assert torch.equal(loaded(audio=a, video=v), model(audio=a, video=v))


# --------------------------------------------------------------------------- zorro convert


SEED_ARGS = dict(dim=32, depth=2, heads=4, dim_head=8, num_fusion_tokens=3, audio_patch_size=8, video_patch_size=8, spec_n_fft=32)


def _seed_file(tmp_path) -> tuple[Path, DenseZorro]:
    seed = DenseZorro(**SEED_ARGS).eval()
    path = tmp_path / "seed.pt"
    torch.save(seed.state_dict(), path)
    return path, seed


def test_convert_cli_flags_write_a_pretrained_folder(tmp_path):
    path, seed = _seed_file(tmp_path)
    rc = cli_main(["convert", "--from", "zorro-pytorch", str(path), str(tmp_path / "out"), "--heads", "4", "--dim-head", "8",
                   "--audio-patch-size", "8", "--video-patch-size", "8", "8", "--spec-n-fft", "32"])
    assert rc == 0
    model = Zorro.from_pretrained(str(tmp_path / "out"))
    assert (model.config.heads, model.config.dim_head, model.config.audio_frontend, model.config.pos_embed) == (4, 8, "spectrogram", "none")
    a, v = torch.rand(2, 1000) - 0.5, torch.randn(2, 3, 2, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(model(audio=a, video=v), seed(audio=a, video=v), atol=1e-5, rtol=1e-5)


def test_convert_cli_seed_config_json_file_and_flag_precedence(tmp_path):
    path, _ = _seed_file(tmp_path)
    cfg = tmp_path / "seed.json"
    cfg.write_text(json.dumps({"heads": 2, "dim_head": 8, "audio_patch_size": 8, "video_patch_size": [8, 8], "spec_n_fft": 32}))
    rc = cli_main(["convert", "--from", "zorro-pytorch", str(path), str(tmp_path / "out"), "--seed-config", str(cfg), "--heads", "4"])
    assert rc == 0
    assert Zorro.from_pretrained(str(tmp_path / "out")).config.heads == 4


def test_convert_cli_errors(tmp_path):
    path, _ = _seed_file(tmp_path)
    # wrong inner width (heads * dim_head) -> clear error, exit code 1, nothing written
    assert cli_main(["convert", "--from", "zorro-pytorch", str(path), str(tmp_path / "bad"), "--heads", "8", "--dim-head", "8",
                     "--audio-patch-size", "8", "--video-patch-size", "8", "--spec-n-fft", "32"]) == 1
    assert not (tmp_path / "bad").exists()
    marker = tmp_path / "pwned"
    torch.save({"return_tokens": torch.zeros(3, 32), "payload": ArmedPickle(marker)}, tmp_path / "evil.pt")
    assert cli_main(["convert", "--from", "zorro-pytorch", str(tmp_path / "evil.pt"), str(tmp_path / "out")]) == 1
    assert not marker.exists() and not (tmp_path / "out").exists()
    with pytest.raises(SystemExit):
        cli_main(["convert", "--from", "timm", str(path), str(tmp_path / "out")])
