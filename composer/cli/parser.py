"""The argument parser of the CLI and the scripts: a usage error is one line. Imports argparse
alone, so that ``metacompose --help`` stays cheap."""

from __future__ import annotations

import argparse
from typing import NoReturn


class OneLineParser(argparse.ArgumentParser):
    """A usage error is one line on stderr (exit 2), naming the command, the flag and the value;
    argparse's default prints the usage first. Subcommand parsers inherit the class."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} ({self.prog} --help lists the options)\n")
