"""``metacompose``: the command-line entry point. Each command lives in its own module."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from composer.cli import eval_cmd, inspect_cmd, plot_cmd, report_cmd, train_cmd, verify_cmd
from composer.config import ConfigError
from composer.graph import GraphError
from composer.training.checkpoint_io import CheckpointError

# name -> module with ``add_arguments(parser)``, ``run(args) -> int`` and a docstring summary.
COMMANDS = {
    "train": train_cmd,
    "eval": eval_cmd,
    "inspect": inspect_cmd,
    "plot": plot_cmd,
    "report": report_cmd,
    "verify": verify_cmd,
}

USER_ERRORS = (ConfigError, CheckpointError, GraphError, FileNotFoundError, ValueError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="metacompose",
        description="Modular neurosymbolic meta-learning: train, evaluate, inspect and verify.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module in COMMANDS.items():
        doc = (module.__doc__ or "").strip().splitlines()[0]
        p = sub.add_parser(name, help=doc, description=doc)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except USER_ERRORS as e:
        print(f"metacompose {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"metacompose {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
