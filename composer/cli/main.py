"""``metacompose``: the command-line entry point. Each command lives in its own module.

Start-up stays cheap: only the chosen command's module is imported, and each command imports
torch, Lightning and the rest inside its ``run``; ``metacompose --help`` imports none of them.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading
from collections.abc import Sequence

from metacompose.cli.parser import OneLineParser
from metacompose.cli.script_errors import reader_gone, stdout_gone

# name -> (module with ``add_arguments(parser)`` and ``run(args) -> int``, one-line summary)
COMMANDS = {
    "train": (
        "metacompose.cli.train_cmd",
        "meta-train from a YAML config; prints the run folder last",
    ),
    "eval": (
        "metacompose.cli.eval_cmd",
        "adapt a checkpoint to fresh meta-test tasks, print the metric",
    ),
    "inspect": ("metacompose.cli.inspect_cmd", "per-task module graphs, module usage and heat map"),
    "plot": ("metacompose.cli.plot_cmd", "plot a run's learning curves as PNG files"),
    "report": (
        "metacompose.cli.report_cmd",
        "evaluation report of checkpoints (JSON, Markdown, PNG)",
    ),
    "verify": ("metacompose.cli.verify_cmd", "certify adaptations against a stability spec"),
}


def user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "bad input": one line on stderr, exit 2, no traceback."""
    from metacompose.config import ConfigError
    from metacompose.graph import GraphError
    from metacompose.optional import MissingExtraError
    from metacompose.training.checkpoint_io import CheckpointError

    return (
        ConfigError,
        CheckpointError,
        GraphError,
        MissingExtraError,
        FileNotFoundError,
        ValueError,
    )


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The parser; only the subcommand named in ``argv`` (if any) gets its arguments added."""
    parser = OneLineParser(
        prog="metacompose",
        description="Modular neurosymbolic meta-learning: train, evaluate, inspect and verify.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    chosen = next((a for a in argv if a in COMMANDS), None)
    for name, (module_name, summary) in COMMANDS.items():
        p = sub.add_parser(name, help=summary, description=summary)
        if name == chosen:
            module = importlib.import_module(module_name)
            module.add_arguments(p)
            p.set_defaults(_run=module.run, _parser=p)
    return parser


class Terminated(BaseException):
    """SIGTERM outside a training fit (which saves and stops on its own: ``GracefulStop``)."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args, extra = build_parser(argv).parse_known_args(argv)
    late = getattr(args, "_late_positionals", None)  # argparse stops a nargs="*" at an option
    if late and extra:
        tail = [e for e in extra if "=" in e and not e.startswith("-")]
        setattr(args, late, [*getattr(args, late), *tail])
        extra = [e for e in extra if e not in tail]
    if extra:  # blamed on the command they were given to, whose --help lists its flags
        args._parser.error(f"unrecognized arguments: {' '.join(extra)}")
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if main_thread else None
    if previous is signal.SIG_DFL:  # it ended silently with 143
        signal.signal(signal.SIGTERM, _terminate)
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print(f"metacompose {args.command}: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print(f"metacompose {args.command}: terminated (SIGTERM)", file=sys.stderr)
        return 128 + signal.SIGTERM
    except BrokenPipeError:  # ... | head: the reader has what it wanted
        if not stdout_gone():
            raise
        return reader_gone()
    except Exception as e:
        if not isinstance(e, user_errors()):
            raise
        print(f"metacompose {args.command}: error: {e}", file=sys.stderr)
        return 2
    finally:
        if previous is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
