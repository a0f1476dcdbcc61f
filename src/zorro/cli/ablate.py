"""``zorro ablate masks``: Zorro's masks against full attention and MBT-style bottlenecks."""

from __future__ import annotations

import argparse
from pathlib import Path


def _cmd_masks(args: argparse.Namespace) -> int:
    from zorro.cli.train_cmd import parse_overrides
    from zorro.recipes.ablate_masks import run_ablation

    overrides = parse_overrides(args.overrides)
    if args.seeds is not None:
        overrides["seeds"] = args.seeds
    if args.no_fusion_sweep:
        overrides["fusion_tokens"] = []
    metrics = run_ablation(out_dir=Path(args.out), data_dir=Path(args.data), quick=args.quick, config_overrides=overrides)
    print(metrics["table"])
    print(f"{metrics['runs_finished']} runs in {metrics['seconds']:.0f} s wall ({metrics['cpu_seconds']:.0f} s CPU in this process)")
    print(f"metrics: {Path(args.out) / 'metrics.json'}   table: {Path(args.out) / 'table.md'}   plot: {Path(args.out) / 'ablation.png'}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``zorro ablate`` (sub-command ``masks``) to the ``zorro`` parser."""
    p = sub.add_parser("ablate", help="controlled comparisons on AV-digits (attention rules)",
                       description="Controlled comparisons on the AV-digits demo data.")
    kinds = p.add_subparsers(dest="ablation", metavar="ABLATION")
    m = kinds.add_parser("masks", help="mask_rule zorro vs full vs bottleneck (and fusion-token counts)",
                         description="Contrastive pre-training under each attention rule (zorro, full, bottleneck) with the "
                                     "same data, steps and seeds; then retrieval from unimodal and from both inputs, "
                                     "nearest-centroid probes of o_A (audio only) and o_V (video only), and fine-tuned "
                                     "audio-only / video-only top-1. Writes metrics.json, table.md and ablation.png.")
    m.add_argument("--out", default="runs/ablate", help="output folder (finished runs inside are reused)")
    m.add_argument("--data", default="data/avdigits", help="AV-digits folder (built on first use)")
    m.add_argument("--seeds", type=int, nargs="+", help="training seeds (default 0 1)")
    m.add_argument("--no-fusion-sweep", action="store_true", help="skip the extra fusion-token variants under zorro")
    m.add_argument("--quick", action="store_true", help="a tiny smoke configuration (seconds), not the real comparison")
    m.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting of zorro.recipes.ablate_masks.ABLATION_SETTINGS, e.g. pretrain.optim.epochs=8")
    m.set_defaults(func=_cmd_masks)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])
