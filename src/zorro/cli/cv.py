"""``zorro cv``: k-fold cross-validation over the folds recorded in prepared shards (the
datasets of :mod:`zorro.data.registry` whose protocol has folds: ESC-50, UrbanSound8K)."""

from __future__ import annotations

import argparse
import json
import logging

from zorro.cli.train_cmd import add_config_file_args

logger = logging.getLogger("zorro.cli")


def _cmd(args: argparse.Namespace) -> int:
    from zorro.cli.train_cmd import load_config
    from zorro.recipes.cross_validation import run_cross_validation
    from zorro.train import TrainConfig

    fixed: dict = {"task": "supervised"}
    if args.out:
        fixed["run"] = {"out_dir": args.out}
    if args.init_from:
        fixed["model"] = {"init_from": args.init_from}
    cfg = TrainConfig.from_dict(load_config(args.config, args.overrides, fixed))
    folds = None
    if args.folds:
        folds = [int(f) if f.lstrip("-").isdigit() else f for f in args.folds]
    result = run_cross_validation(cfg, shards=args.shards, field=args.field, folds=folds)
    s = result["summary"]
    print(json.dumps({"protocol": result["protocol"], result["metric"]: {"mean": round(s["mean"], 4), "std": round(s["std"], 4),
                                                                         "folds": [round(v, 4) for v in s["folds"]]}}))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``cv`` to the ``zorro`` parser."""
    from zorro.data.registry import specs

    with_folds = [f"{s.name} ({len(s.protocol.folds)} folds)" for s in specs() if s.protocol.folds]
    p = sub.add_parser("cv", help=f"k-fold cross-validation on prepared shards ({', '.join(with_folds)})",
                       description="Trains one supervised model per fold on the other folds of a prepared shard folder and "
                                   "evaluates it on its fold with the dataset's protocol (data.eval_protocol, default: the "
                                   "dataset the folder was prepared from); writes OUT/fold{k}/ run folders and "
                                   "OUT/cv_metrics.json (mean and std of the headline metric over the folds). Datasets with "
                                   f"predefined folds: {', '.join(with_folds)}.")
    add_config_file_args(p)  # --config (e.g. configs/esc50/finetune.yaml) and --set
    p.add_argument("--shards", help="prepared folder holding every fold (default: data.train_shards)")
    p.add_argument("--out", help="parent folder of the fold runs (run.out_dir)")
    p.add_argument("--init-from", help="pre-trained backbone folder (model.init_from)")
    p.add_argument("--field", default=None, help="the sample-meta field holding the fold (default: the dataset's, fold)")
    p.add_argument("--folds", nargs="+", help="hold out only these fold values (default: every value present)")
    p.set_defaults(func=_cmd)
