"""The ``zorro`` command line: ``zorro <command> --help`` describes each command.

Each command lives in its own module exposing ``register(subparsers)``, which adds an
``argparse`` sub-parser and sets ``func`` (called with the parsed namespace, returns an exit
code). The command modules are imported lazily so ``zorro --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

#: command modules under ``zorro.cli``, in the order ``--help`` lists them
COMMAND_MODULES = ("train_cmd", "convert", "export", "audio_stats", "prepare", "ablate", "cv")


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every available sub-command registered."""
    parser = argparse.ArgumentParser(prog="zorro", description="Zorro, the masked multimodal transformer: train, evaluate, convert, export.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"zorro.cli.{name}")
        except ModuleNotFoundError as err:
            if err.name == f"zorro.cli.{name}":
                continue  # command not built yet
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``zorro`` console script; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, TypeError, FileNotFoundError) as err:
        logging.getLogger("zorro").error("%s", err)
        return 1


if __name__ == "__main__":
    sys.exit(main())
