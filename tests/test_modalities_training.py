"""Training over the modality table: the pairwise contrastive loss (equal to the audio-video
loss with two modalities), clips missing a modality, batching of padded modalities, the
objectives, evaluation per modality and retrieval for every ordered pair."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F

from zorro import ByteTokenizer, Zorro
from zorro.data import collate_clips, modality_inputs, split_by_modality
from zorro.evaluate import centroid_probe, evaluate_classifier, evaluate_retrieval
from zorro.heads import BatchStandardize, ContrastiveHead
from zorro.losses import ZorroContrastiveLoss, info_nce
from zorro.tasks import ZorroClassifier, ZorroPretrainer
from zorro.train.objectives import ContrastiveObjective, SupervisedObjective

MODS = {"audio": {"kind": "audio", "audio_patch_size": 8, "fbank_num_mel_bins": 32, "spec_aug_freq_mask": 0,
                  "spec_aug_time_mask": 0, "spec_aug_stretch_factor": 1.0},
        "video": {"kind": "video", "video_patch_size": 8},
        "text": {"kind": "text"}}


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # 4000 samples crop to whole patches
        yield


def unit(*shape, seed=0):
    return F.normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(seed)), dim=-1)


def backbone(**kw):
    return Zorro(dim=32, depth=1, heads=2, dim_head=16, num_fusion_tokens=2, modalities=MODS,
                 return_token_types=("audio", "video", "text", "fusion", "global"), **kw)


def tri_items(n=8, missing_text=(0, 4)):
    tok = ByteTokenizer()
    g = torch.Generator().manual_seed(3)
    items = []
    for i in range(n):
        has = i not in missing_text
        items.append({"audio": torch.randn(4000, generator=g) * 0.1, "video": torch.randn(3, 2, 16, 16, generator=g),
                      "label": i % 3, "index": i, "path": f"clip{i}.mp4",
                      "text": tok.encode(f"digit {i % 3}" + "!" * i) if has else None, "has_text": has})
    return items


# ----------------------------------------------------------------------------- the loss


def test_two_modality_loss_equals_the_audio_video_formula():
    z = {"audio": unit(6, 4, seed=1), "video": unit(6, 4, seed=2), "fusion": unit(6, 8, seed=3), "global": unit(6, 8, seed=4)}
    loss_fn = ZorroContrastiveLoss(fusion_weight=0.5, global_weight=2.0)
    total, parts = loss_fn(z, 3.0)
    u = torch.cat([z["audio"], z["video"]], -1) / math.sqrt(2)
    expected = info_nce(z["audio"], z["video"], 3.0) + 0.5 * info_nce(z["fusion"], u, 3.0) + 2.0 * info_nce(z["global"], u, 3.0)
    assert torch.equal(total, expected)
    assert set(parts) == {"audio_video", "fusion", "global", "total"}
    # every clip present: exactly the same computation
    everyone = {m: torch.ones(6, dtype=torch.bool) for m in ("audio", "video")}
    assert torch.equal(loss_fn(z, 3.0, everyone)[0], total)


def test_three_modality_loss_is_the_mean_of_the_pairs_plus_the_fusion_terms():
    z = {"audio": unit(5, 4, seed=1), "video": unit(5, 4, seed=2), "text": unit(5, 4, seed=3), "fusion": unit(5, 12, seed=4)}
    loss_fn = ZorroContrastiveLoss(global_weight=0.0, modalities=("audio", "video", "text"))
    total, parts = loss_fn(z, 2.0)
    pairs = [info_nce(z[a], z[b], 2.0) for a, b in (("audio", "video"), ("audio", "text"), ("video", "text"))]
    u = torch.cat([z["audio"], z["video"], z["text"]], -1) / math.sqrt(3)
    torch.testing.assert_close(total, torch.stack(pairs).mean() + info_nce(z["fusion"], u, 2.0))
    assert set(parts) == {"audio_video", "audio_text", "video_text", "fusion", "total"}


def test_pairs_with_an_absent_input_are_left_out_for_that_clip():
    z = {"audio": unit(6, 4, seed=1), "video": unit(6, 4, seed=2), "text": unit(6, 4, seed=3)}
    has_text = torch.tensor([True, False, True, True, False, True])
    present = {"audio": torch.ones(6, dtype=torch.bool), "video": torch.ones(6, dtype=torch.bool), "text": has_text}
    loss_fn = ZorroContrastiveLoss(modalities=("audio", "video", "text"))
    _, parts = loss_fn(z, 2.0, present)
    keep = has_text.nonzero().flatten()
    assert parts["audio_text"] == pytest.approx(float(info_nce(z["audio"][keep], z["text"][keep], 2.0)), rel=1e-5)
    assert parts["audio_video"] == pytest.approx(float(info_nce(z["audio"], z["video"], 2.0)), rel=1e-6)
    # what an absent caption's row holds never matters
    z2 = dict(z, text=z["text"].clone())
    z2["text"][~has_text] = unit(2, 4, seed=9)
    assert loss_fn(z2, 2.0, present)[1] == parts


def test_masked_info_nce_equals_info_nce_on_the_valid_rows_and_keeps_gradients_finite():
    a, b = unit(7, 5, seed=1).requires_grad_(), unit(7, 5, seed=2)
    valid = torch.tensor([True, True, False, True, False, True, True])
    masked = info_nce(a, b, 4.0, valid=valid)
    torch.testing.assert_close(masked, info_nce(a[valid], b[valid], 4.0))
    masked.backward()
    assert torch.isfinite(a.grad).all() and a.grad[~valid].abs().max() == 0
    none = info_nce(a, b, 4.0, valid=torch.zeros(7, dtype=torch.bool))
    assert float(none) == 0.0


def test_batch_standardize_statistics_come_from_the_valid_rows():
    bn = BatchStandardize(3).train()
    x = torch.randn(6, 3)
    valid = torch.tensor([True, False, True, True, False, True])
    out = bn(x, valid)
    ref = (x - x[valid].mean(0)) / torch.sqrt(x[valid].var(0, unbiased=False) + bn.eps)
    torch.testing.assert_close(out, ref)


def test_contrastive_head_widens_the_multimodal_projections_with_the_modalities():
    head = ContrastiveHead(32, 8, names=("audio", "video", "text", "fusion"), num_modalities=3)
    out = head({n: torch.randn(4, 32) for n in ("audio", "video", "text", "fusion")})
    assert out["text"].shape == (4, 8) and out["fusion"].shape == (4, 24)


# ----------------------------------------------------------------------------- batching


def test_collate_pads_extra_modalities_and_marks_absent_ones():
    batch = collate_clips(tri_items(4, missing_text=(1,)))
    lengths = [len(ByteTokenizer().encode(f"digit {i % 3}" + "!" * i)) for i in range(4)]
    assert batch["text"].shape == (4, max(lengths)) and batch["text"].dtype == torch.long
    assert batch["has_text"].tolist() == [True, False, True, True]
    assert batch["text_mask"].sum(1).tolist() == [lengths[0], 0, lengths[2], lengths[3]]
    assert (batch["text"][~batch["text_mask"]] == 0).all()


def test_split_by_modality_groups_by_every_modality():
    batch = collate_clips(tri_items(6, missing_text=(1, 4)))
    groups = list(split_by_modality(batch))
    assert [g["batch_index"].tolist() for g in groups] == [[0, 2, 3, 5], [1, 4]]
    assert groups[1]["text"] is None and groups[1]["text_mask"] is None and groups[0]["text"].shape[0] == 4
    only_av = list(split_by_modality(batch, ["audio", "video"]))
    assert len(only_av) == 1 and only_av[0]["text"] is None
    inputs = modality_inputs(groups[0], ("audio", "video", "text"))
    assert set(inputs) == {"audio", "video", "text", "text_mask"}


# ----------------------------------------------------------------------------- objectives and evaluation


def test_contrastive_objective_over_three_modalities_trains_every_tokenizer():
    torch.manual_seed(0)
    objective = ContrastiveObjective(ZorroPretrainer(backbone(), proj_dim=8), fusion_weight=1.0, global_weight=1.0)
    batch = collate_clips(tri_items(8))
    loss, parts = objective(batch)
    assert {"audio_video", "audio_text", "video_text", "fusion", "global"} <= set(parts)
    loss.backward()
    bb = objective.task.backbone
    for name in ("audio_embed", "video_embed", "text_embed"):
        grads = [p.grad for p in getattr(bb, name).parameters() if p.requires_grad]
        assert any(g is not None and g.abs().sum() > 0 for g in grads), name


def test_two_view_objective_over_three_modalities():
    torch.manual_seed(0)
    objective = ContrastiveObjective(ZorroPretrainer(backbone(), proj_dim=8), fusion_weight=1.0, global_weight=0.0,
                                     intra_weight=0.5, cross_view=True)
    loss, parts = objective(collate_clips(tri_items(8)))
    assert torch.isfinite(loss)
    assert {"audio_audio", "video_video", "audio_text_cross", "audio_video_cross"} <= set(parts)
    assert "text_text" not in parts  # text is not augmented: the two views are the same


def test_supervised_objective_and_per_modality_evaluation():
    torch.manual_seed(0)
    task = ZorroClassifier(backbone(), 3)
    objective = SupervisedObjective(task, multi_label=False, label_smoothing=0.0, mixup_alpha=0.0)
    batch = collate_clips(tri_items(8))
    loss, parts = objective(batch)
    loss.backward()
    assert {"audio", "video", "text", "fusion", "global"} <= set(parts)
    metrics = evaluate_classifier(task, [batch])
    assert {"text_only", "audio_only", "video_only", "average"} <= set(metrics)
    assert metrics["text_only"]["heads"].keys() >= {"text", "fusion", "global"}
    assert "audio" not in metrics["text_only"]["heads"]


def test_retrieval_for_every_ordered_pair():
    pretrainer = ZorroPretrainer(backbone(), proj_dim=8)
    batch = collate_clips(tri_items(8, missing_text=()))
    metrics = evaluate_retrieval(pretrainer, [batch])
    for pair in ("a2v", "v2a", "a2t", "t2a", "v2t", "t2v"):
        assert f"{pair}_r1" in metrics and f"{pair}_r5" in metrics and f"instance_{pair}_r1" in metrics
    uni = evaluate_retrieval(pretrainer, [batch], unimodal=True)
    for key in metrics:  # zorro masks: a modality alone gives the same embeddings
        assert uni[key] == pytest.approx(metrics[key])
    probe = centroid_probe(pretrainer.backbone, [batch], [batch], unimodal=True)
    assert set(probe) == {"audio", "video", "text"}


def test_pretrainer_needs_two_modality_outputs():
    with pytest.raises(ValueError, match="at least two modalities"):
        ZorroPretrainer(Zorro(dim=32, depth=1, heads=2, dim_head=16, modalities=MODS, return_token_types=("text", "fusion")))


class _Items(torch.utils.data.Dataset):
    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


@pytest.mark.parametrize("task", ["pretrain", "supervised"])
def test_trainer_runs_a_three_modality_model_end_to_end(task, tmp_path):
    from zorro.data import LabelVocab
    from zorro.train import TrainConfig, train

    arch = dict(dim=32, depth=1, heads=2, dim_head=16, num_fusion_tokens=2, modalities=MODS,
                return_token_types=["audio", "video", "text", "fusion", "global"])
    cfg = TrainConfig(task=task, model={"arch": arch, "precision": "fp32"},
                      data={"batch_size": 4, "num_workers": 0, "eval_batch_size": 8},
                      optim={"epochs": 1, "warmup_steps": 1}, objective={"proj_dim": 8},
                      run={"out_dir": str(tmp_path / task), "progress": False, "tensorboard": False})
    items = tri_items(8)
    metrics = train(cfg, _Items(items), _Items(items), vocab=LabelVocab(["0", "1", "2"]))
    if task == "pretrain":
        assert {"a2t_r1", "t2v_r1"} <= set(metrics)
    else:
        assert {"text", "text_only", "audio_only"} <= set(metrics)
    loaded = Zorro.from_pretrained(str(tmp_path / task / "model"))
    assert loaded.modality_names == ("audio", "video", "text")
