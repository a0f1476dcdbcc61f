"""The training loop: :class:`Trainer` runs one job (contrastive pre-training or supervised
training) in a plain PyTorch loop, and :func:`train` is its one-call form.

The loop is deliberately ordinary: AdamW (no weight decay on norms, biases and learned
tokens), linear warm-up then cosine decay, gradient clipping and accumulation, bf16
autocast, optional ``torch.compile``. Multi-process training uses
:class:`~torch.nn.parallel.DistributedDataParallel` set up from the environment ``torchrun``
provides (gloo on CPU, nccl on CUDA) and a :class:`~torch.utils.data.DistributedSampler`;
rank 0 alone writes files.

Resume is exact: a checkpoint holds the model, optimiser, scheduler, step, the position in
the epoch and every RNG state, and the data order depends only on ``(seed, epoch)``, so a
run killed at any point and resumed ends with the weights of an uninterrupted run.
"""

from __future__ import annotations

import json
import logging
import time
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset

from zorro.checkpoint import latest_checkpoint, load_training_checkpoint, save_training_checkpoint
from zorro.data import LabelVocab, ShardDataset, ShardSampler, SkipTracker, collate_clips
from zorro.data.shards.reader import normalize_uint8_video
from zorro.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from zorro.evaluate import headline
from zorro.fileio import atomic_write_text
from zorro.hub import atomic_save_safetensors
from zorro.layers.flex import CPU_BACKWARD_MESSAGE
from zorro.train.build import build_backbone, build_dataset, build_shard_dataset, build_task, compile_backbone
from zorro.train.config import TrainConfig
from zorro.train.data_report import DataReport
from zorro.train.distributed import ResumableSampler, init_distributed
from zorro.train.features import CachedClips
from zorro.train.optim import param_groups, warmup_cosine
from zorro.train.precision import autocast, resolve_precision
from zorro.train.record import resolve_run_config
from zorro.train.reporting import Progress, TensorBoardLog
from zorro.train.rng import seed_everything

__all__ = ["NonFiniteLossError", "Trainer", "train"]

logger = logging.getLogger("zorro.train")


class NonFiniteLossError(RuntimeError):
    """Raised when a loss is NaN or infinite; the last good state has been checkpointed."""


def _to_device(batch: dict[str, Any], device: torch.device, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> dict[str, Any]:
    out = {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    if isinstance(out.get("video"), torch.Tensor) and out["video"].dtype == torch.uint8:
        out["video"] = normalize_uint8_video(out["video"], mean, std)  # shards hand uint8 frames: normalised here, on the device
    return out


class Trainer:
    """Runs one training job; see the module docstring.

    Args:
        cfg: the run's configuration.
        train_set: dataset of clip dicts (as :class:`~zorro.data.ClipDataset` yields); built
            from ``cfg.data.train_manifest`` when None.
        eval_set: evaluation dataset or None.
        vocab: label vocabulary (saved with the run); taken from ``train_set.vocab`` if any.
    """

    def __init__(self, cfg: TrainConfig, train_set: Dataset | None = None, eval_set: Dataset | None = None, vocab: LabelVocab | None = None) -> None:
        self.dist = init_distributed()
        cfg = replace(cfg, model=replace(cfg.model, precision=resolve_precision(cfg.model.precision, self.dist.device)))  # the caller's config is left as given
        self.cfg = cfg
        self.out = Path(cfg.run.out_dir)
        seed_everything(cfg.run.seed)
        for split in ("train", "eval"):
            if getattr(cfg.data, f"{split}_manifest") and getattr(cfg.data, f"{split}_shards"):
                raise ValueError(f"give data.{split}_manifest or data.{split}_shards, not both")
        if train_set is None:
            if cfg.data.train_shards:
                train_set = build_shard_dataset(cfg, cfg.data.train_shards, train=True, vocab=vocab)
            elif cfg.data.train_manifest:
                train_set = build_dataset(cfg, cfg.data.train_manifest, train=True, vocab=vocab)
            else:
                raise ValueError("no training data: give data.train_manifest or data.train_shards in the config (or pass train_set)")
        self.vocab = vocab or getattr(train_set, "vocab", None)
        if eval_set is None and cfg.data.eval_shards:
            eval_set = build_shard_dataset(cfg, cfg.data.eval_shards, train=False, vocab=self.vocab)
        elif eval_set is None and cfg.data.eval_manifest:
            eval_set = build_dataset(cfg, cfg.data.eval_manifest, train=False, vocab=self.vocab)
        if cfg.data.cache_decoded:
            train_set = train_set if isinstance(train_set, CachedClips) else CachedClips(train_set, num_workers=cfg.data.num_workers)
            if eval_set is not None and not isinstance(eval_set, CachedClips):
                eval_set = CachedClips(eval_set, num_workers=cfg.data.num_workers)
        self.train_set, self.eval_set = train_set, eval_set
        num_classes = len(self.vocab) if self.vocab is not None else None

        self.backbone = build_backbone(cfg)
        # What config.json records: the settings the run actually trains with (absolute paths,
        # the backbone's full options, the datasets' clip settings, the decoding rate).
        cfg = self.cfg = resolve_run_config(cfg, arch=self.backbone.config.to_dict(), train_set=train_set, eval_set=eval_set)
        self.objective = build_task(cfg, self.backbone, num_classes).to(self.dist.device)
        if getattr(self.objective, "uses_audio_features", False) and isinstance(train_set, CachedClips):
            train_set.add_audio_features(self.backbone.audio_frontend)  # once, instead of every step
        if self.backbone.config.attn_backend == "flex" and self.dist.device.type == "cpu":
            raise ValueError(f"model.arch.attn_backend: {CPU_BACKWARD_MESSAGE}")
        if cfg.model.compile:
            compile_backbone(self.backbone)
        self.ddp = None
        if self.dist.world_size > 1:
            self.ddp = nn.parallel.DistributedDataParallel(self.objective, find_unused_parameters=True)
        self.optimizer = torch.optim.AdamW(param_groups(self.objective, cfg.optim.weight_decay), lr=cfg.optim.lr, betas=(0.9, 0.999))
        if cfg.data.balanced_sampling:  # AudioSet: weighted draws with replacement (zorro.data.balanced)
            from zorro.data.balanced import BalancedSampler, balanced_weights, dataset_label_ids

            self.sampler = BalancedSampler(balanced_weights(*dataset_label_ids(train_set)), num_samples=cfg.data.samples_per_epoch or len(train_set),
                                           num_replicas=self.dist.world_size, rank=self.dist.rank, seed=cfg.run.seed)
        elif isinstance(train_set, ShardDataset) or hasattr(train_set, "shard_sizes"):  # shards: equal lengths per rank, exactly once, resumable
            self.sampler = ShardSampler(train_set, num_replicas=self.dist.world_size, rank=self.dist.rank, seed=cfg.run.seed)
        else:
            self.sampler = ResumableSampler(train_set, num_replicas=self.dist.world_size, rank=self.dist.rank, shuffle=True, seed=cfg.run.seed)
        self.micro_per_epoch = len(self.sampler) // cfg.data.batch_size
        self.steps_per_epoch = self.micro_per_epoch // cfg.optim.accum_steps
        if self.steps_per_epoch < 1:
            raise ValueError(
                f"the training set gives {len(self.sampler)} clips per process, fewer than one optimiser step "
                f"(data.batch_size {cfg.data.batch_size} x optim.accum_steps {cfg.optim.accum_steps})"
            )
        self.total_steps = cfg.optim.max_steps or cfg.optim.epochs * self.steps_per_epoch
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lambda s: warmup_cosine(s, warmup=cfg.optim.warmup_steps, total=self.total_steps, min_ratio=cfg.optim.min_lr_ratio),
        )
        self.step = 0
        self._last_ckpt_step = -1
        self.history: list[dict[str, Any]] = []
        self.skips = SkipTracker()
        self.dropped_with_other_rank = 0  # micro-batches passed over because another rank's was all damaged
        self.eval_skips = SkipTracker("evaluation")  # unreadable evaluation files: logged once, listed in skipped_eval.jsonl
        # What the clips held (modalities, padding): counted over the first training epoch and
        # the first evaluation of this process, reported once each (data_report.json).
        self.data_reports = {name: DataReport(label, duration=cfg.data.duration, sample_rate=cfg.data.sample_rate)
                             for name, label in (("training", "training (first epoch)"), ("evaluation", "evaluation"))}
        self._reported: set[str] = set()
        self._tensorboard = TensorBoardLog(self.out / "tensorboard", enabled=False)  # opened by fit()

    # -------------------------------------------------------------- files

    def _write_run_files(self) -> None:
        if not self.dist.is_main:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "config.json").write_text(json.dumps(self.cfg.to_dict(), indent=2, default=str))
        if self.vocab is not None:
            self.vocab.save(self.out / "labels.json")

    def _log(self, record: dict[str, Any]) -> None:
        self.history.append(record)
        if self.dist.is_main:
            with open(self.out / "log.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")
            self._tensorboard.write(record)

    def _checkpoint(self, epoch: int, micro_in_epoch: int) -> None:
        self._last_ckpt_step = self.step
        if not self.dist.is_main:
            return
        save_training_checkpoint(
            self.out / "checkpoints",
            model=self.objective,
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            step=self.step,
            config=self.cfg.to_dict(),
            extra={"epoch": epoch, "micro_in_epoch": micro_in_epoch, "history_len": len(self.history),
                   "vocab": None if self.vocab is None else self.vocab.to_json(),
                   "trained_outputs": sorted(getattr(self.objective, "trained_outputs", ()))},
            keep_last=self.cfg.run.keep_checkpoints,
        )

    def _resume(self) -> tuple[int, int]:
        ckpt = latest_checkpoint(self.out / "checkpoints") if self.cfg.run.resume else None
        if ckpt is None:
            if self.dist.is_main and (self.out / "log.jsonl").exists():
                (self.out / "log.jsonl").unlink()  # a fresh run starts a fresh log
            return 0, 0
        state = load_training_checkpoint(ckpt, model=self.objective, optimizer=self.optimizer, scheduler=self.scheduler, restore_rng=True)
        extra = state["extra"]
        self.step = int(state["step"])
        if hasattr(self.objective, "trained_outputs"):
            self.objective.trained_outputs.update(extra.get("trained_outputs") or ())
        logger.info("resumed from %s at step %d (epoch %d)", ckpt, self.step, extra["epoch"])
        if self.dist.is_main and (self.out / "log.jsonl").exists():  # drop log lines written after the checkpoint
            lines = (self.out / "log.jsonl").read_text().splitlines()[: extra["history_len"]]
            (self.out / "log.jsonl").write_text("".join(line + "\n" for line in lines))
            self.history = [json.loads(line) for line in lines]
        return int(extra["epoch"]), int(extra["micro_in_epoch"])

    # -------------------------------------------------------------- loop

    def fit(self) -> dict[str, Any]:
        """Train to the end (resuming if a checkpoint exists); returns the final eval metrics
        (or an empty dict without an eval set)."""
        cfg, device = self.cfg, self.dist.device
        self._write_run_files()
        epoch, micro_start = self._resume()
        module = self.ddp or self.objective
        progress = Progress(self.total_steps, initial=self.step, desc=cfg.task, enabled=cfg.run.progress and self.dist.is_main)
        self._tensorboard = TensorBoardLog(self.out / "tensorboard", enabled=cfg.run.tensorboard and self.dist.is_main,
                                           purge_step=self.step or None)  # a resumed run drops events after its checkpoint
        t0, seen = time.perf_counter(), 0
        metrics: dict[str, Any] = {}
        while self.step < self.total_steps:
            self.sampler.set_epoch(epoch)
            if hasattr(self.train_set, "set_epoch"):
                self.train_set.set_epoch(epoch)
            self.sampler.skip = micro_start * cfg.data.batch_size
            loader = DataLoader(
                self.train_set,
                batch_size=cfg.data.batch_size,
                sampler=self.sampler,
                num_workers=0 if isinstance(self.train_set, CachedClips) else cfg.data.num_workers,
                collate_fn=collate_clips,
                drop_last=True,
                generator=torch.Generator().manual_seed(cfg.run.seed * 1000 + epoch),
            )
            self.objective.train()
            micro = micro_start
            for batch in loader:
                if micro >= self.steps_per_epoch * cfg.optim.accum_steps or self.step >= self.total_steps:
                    break
                self.skips.update(batch)
                if "training" not in self._reported:
                    self.data_reports["training"].update(batch)
                if self._empty_on_any_rank(len(batch["label"]) == 0):
                    micro += 1
                    continue
                batch = _to_device(batch, device, cfg.data.video_mean, cfg.data.video_std)
                last_micro = (micro + 1) % cfg.optim.accum_steps == 0
                sync = self.ddp.no_sync() if (self.ddp is not None and not last_micro) else nullcontext()
                with sync:
                    with autocast(cfg.model.precision, device):
                        loss, parts = module(batch)
                    if not self._all_finite(loss):
                        self._checkpoint(epoch, micro - micro % cfg.optim.accum_steps)
                        self._tensorboard.close()
                        raise NonFiniteLossError(
                            f"non-finite loss {float(loss.detach())} at step {self.step} (parts {parts}); the last good state is "
                            f"checkpointed in {self.out / 'checkpoints'}. Lower lr, use fp32, or check the data."
                        )
                    (loss / cfg.optim.accum_steps).backward()
                seen += len(batch["label"]) * self.dist.world_size
                micro += 1
                if not last_micro:
                    continue
                grad_norm = None
                if cfg.optim.grad_clip > 0:
                    grad_norm = float(torch.nn.utils.clip_grad_norm_(self.objective.parameters(), cfg.optim.grad_clip))
                self.optimizer.step()
                self.scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
                head = getattr(getattr(self.objective, "task", None), "head", None)
                if head is not None and hasattr(head, "clamp_logit_scale_"):
                    head.clamp_logit_scale_()
                self.step += 1
                if progress.enabled:
                    progress.update(self.step, loss=parts.get("total", float(loss.detach())), clips_per_s=seen / (time.perf_counter() - t0))
                if self.step % cfg.run.log_every == 0 or self.step == self.total_steps:
                    loss_value = self._global_mean(parts.get("total", float(loss.detach())))
                    record = {"step": self.step, "epoch": epoch, "lr": self.scheduler.get_last_lr()[0],
                              "loss": loss_value, "parts": parts,
                              "clips_per_s": seen / (time.perf_counter() - t0)}
                    if grad_norm is not None:
                        record["grad_norm"] = grad_norm
                    self._log(record)
                if cfg.run.ckpt_every and self.step % cfg.run.ckpt_every == 0:
                    self._checkpoint(epoch, micro)
            self.skips.end_epoch(epoch)
            self._report_data("training")
            self._write_skip_report()
            epoch, micro_start = epoch + 1, 0
            if self._last_ckpt_step != self.step:
                self._checkpoint(epoch, 0)
            if cfg.run.eval_every and epoch % cfg.run.eval_every == 0 and self.eval_set is not None and self.step < self.total_steps:
                metrics = self.evaluate()
                self._log({"step": self.step, "epoch": epoch, "eval": metrics})
                logger.info("evaluation after epoch %d (step %d): %s", epoch, self.step, json.dumps(headline(metrics)))
        progress.close()
        self._drop_untrained_heads()
        if self.eval_set is not None:
            metrics = self.evaluate(report_dir=self.out / "confusion")
            self._log({"step": self.step, "epoch": epoch, "eval": metrics})
            logger.info("final evaluation (step %d): %s", self.step, json.dumps(headline(metrics)))
        self._finish(metrics)
        self._tensorboard.close()
        if self.dist.world_size > 1:
            dist.barrier()  # other ranks wait while rank 0 writes, so all leave the group together
        return metrics

    def _empty_on_any_rank(self, empty: bool) -> bool:
        """Whether this micro-batch lost every item to damage on some process. Under DDP all
        ranks then pass over it together, so their collectives and step counts stay aligned
        (exact resume holds with damaged data too); the items the other ranks drop this way
        are counted in ``dropped_with_other_rank`` and logged once."""
        if self.dist.world_size == 1:
            return empty
        flag = torch.tensor([float(empty)], device=self.dist.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if bool(flag.item()) and not empty:
            if self.dropped_with_other_rank == 0:
                logger.warning("rank %d passes over a readable micro-batch because another rank's was entirely unreadable "
                               "(all ranks skip such steps together); counted in dropped_with_other_rank", self.dist.rank)
            self.dropped_with_other_rank += 1
        return bool(flag.item())

    def _all_finite(self, loss: torch.Tensor) -> bool:
        """True when the loss is finite on every process (so all ranks stop together)."""
        finite = torch.isfinite(loss.detach()).to(torch.float32).reshape(1)
        if self.dist.world_size > 1:
            dist.all_reduce(finite, op=dist.ReduceOp.MIN)
        return bool(finite.item())

    def _global_mean(self, value: float) -> float:
        """Average of a per-process float over all processes (the value itself when alone)."""
        if self.dist.world_size == 1:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.dist.device)
        dist.all_reduce(t)
        return float(t) / self.dist.world_size

    # -------------------------------------------------------------- evaluation and outputs

    def evaluate(self, *, report_dir: Path | None = None) -> dict[str, Any]:
        """Metrics of the current model on the eval set (see :mod:`zorro.evaluate`).

        ``report_dir`` (supervised, single-label, rank 0): also write the confusion matrix
        and per-class accuracy of every evaluated output there
        (:func:`zorro.evaluate.write_confusion_report`)."""
        from zorro.evaluate import classifier_metrics, collect_logits, confusion_report, evaluate_retrieval, write_confusion_report

        loader = DataLoader(self.eval_set, batch_size=self.cfg.data.eval_batch_size, num_workers=0 if isinstance(self.eval_set, CachedClips) else self.cfg.data.num_workers, collate_fn=collate_clips)
        tracked = self.eval_skips.track(loader)  # the first pass over the eval set counts its unreadable files
        first = "evaluation" not in self._reported
        if first:
            tracked = self.data_reports["evaluation"].track(tracked)
        with autocast(self.cfg.model.precision, self.dist.device):
            if self.cfg.task == "pretrain":
                metrics = evaluate_retrieval(self.objective.task, tracked, device=self.dist.device)
            else:
                collected = collect_logits(self.objective.task, tracked, device=self.dist.device)
                metrics = classifier_metrics(collected, multi_label=self.cfg.data.multi_label)
                if report_dir is not None and self.dist.is_main and not self.cfg.data.multi_label and self.vocab is not None:
                    write_confusion_report(confusion_report(collected), self.vocab.names, report_dir)
                if self.cfg.data.eval_protocol:  # the dataset's own metrics, one score per file (zorro.protocols)
                    from zorro.protocols import evaluate_protocol

                    metrics["protocol"] = evaluate_protocol(self.objective.task, loader, self.cfg.data.eval_protocol, device=self.dist.device)
        if first:
            self._report_data("evaluation")
        return metrics

    def _report_data(self, split: str) -> None:
        """Log what the ``split`` clips held (once per run and process; see
        :class:`~zorro.train.data_report.DataReport`) and write ``data_report.json``."""
        if split in self._reported:
            return
        self._reported.add(split)
        report = self.data_reports[split]
        report.reduce_distributed()
        if not self.dist.is_main:
            return
        report.log()
        done = {name: self.data_reports[name].summary() for name in ("training", "evaluation") if name in self._reported}
        atomic_write_text(self.out / "data_report.json", json.dumps(done, indent=2))

    def _drop_untrained_heads(self) -> None:
        """Supervised runs: leave out the classifier heads whose output no training clip fed
        (e.g. the video head of an audio-only run), logged once; they are neither evaluated
        nor saved."""
        task = getattr(self.objective, "task", None)
        heads = getattr(task, "heads", None)
        trained = getattr(self.objective, "trained_outputs", None)
        if heads is None or trained is None:
            return
        names = list(heads.names)
        flags = torch.tensor([float(n in trained) for n in names], device=self.dist.device)
        if self.dist.world_size > 1:
            dist.all_reduce(flags, op=dist.ReduceOp.MAX)
        kept = [n for n, f in zip(names, flags.tolist()) if f > 0]
        dropped = [n for n in names if n not in kept]
        if not dropped or not kept:
            return
        if self.dist.is_main:
            logger.warning("the %s head%s got no training data (no training clip had the inputs %s): left out of the "
                           "evaluation and of heads.safetensors", ", ".join(dropped), "s" if len(dropped) > 1 else "",
                           "these outputs need" if len(dropped) > 1 else "this output needs")
        new = type(heads)(heads.dim, heads.num_classes, names=kept).to(self.dist.device)
        new.load_state_dict({k: v for k, v in heads.state_dict().items() if k.split(".")[1] in kept}, strict=True)
        task.heads = new

    def _write_skip_report(self) -> None:
        """The unreadable files this process met (``SkipTracker.write_report``):
        ``skipped.jsonl`` in the run folder (``skipped-rank<r>.jsonl`` per rank under DDP)."""
        name = "skipped.jsonl" if self.dist.world_size == 1 else f"skipped-rank{self.dist.rank}.jsonl"
        self.skips.write_report(self.out / name)
        if self.eval_skips.bad_files:
            self.eval_skips.write_report(self.out / name.replace("skipped", "skipped_eval"))

    def _finish(self, metrics: Mapping[str, Any]) -> None:
        self._write_skip_report()
        if not self.dist.is_main:
            return
        self.backbone.save_pretrained(str(self.out / "model"))
        if self.cfg.task == "supervised":
            atomic_save_safetensors(self.out / "heads.safetensors", self.objective.task.heads.state_dict())
        if metrics:
            atomic_write_text(self.out / "eval_metrics.json", json.dumps(metrics, indent=2))
        try:
            from zorro.plots import plot_history

            plot_history(self.history, self.out / "loss.png", title=f"{self.cfg.task} loss")
        except ImportError:  # matplotlib is a dependency; tolerate minimal installs
            logger.warning("matplotlib is not installed: no loss plot written")
        num_skipped = self.skips.total_skipped
        if num_skipped:
            logger.warning("%d clips were skipped over the run because their files could not be read (%d files, listed in %s)",
                           num_skipped, len(self.skips.bad_files), self.out / "skipped.jsonl")
        unpaired = getattr(self.objective, "num_unpaired", 0)
        if unpaired:
            logger.warning("%d clips lacking audio or video were left out of contrastive training", unpaired)


def train(cfg: TrainConfig, train_set: Dataset | None = None, eval_set: Dataset | None = None, vocab: LabelVocab | None = None) -> dict[str, Any]:
    """Run one training job (see :class:`Trainer`); returns the final eval metrics."""
    return Trainer(cfg, train_set, eval_set, vocab).fit()
