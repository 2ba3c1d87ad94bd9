"""The ``bwc`` console script: parses arguments and maps the project's errors to exit codes.

Command modules are imported lazily so that ``bwc run`` does not pay for what it does not use.
Exit codes (CONTRACT §2): 0 success; 1 the work failed or integrity broken; 2 usage/config error,
one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from firmware import __version__
from hal.errors import BwcError, IntegrityError, RefusedError, UsageError

# Command name -> module under firmware.commands. Each module owns its own sub-parser.
COMMANDS: dict[str, str] = {
    "keys": "keys",
    "provision": "provision",
    "sim": "sim",
    "run": "run",
    "verify": "verify",
    "export": "export",
    "report": "report",
    "fw": "fw",
    "offload": "offload",
    "bootctl": "bootctl",
}

log = logging.getLogger(__name__)


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error in one line with exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser; given ``argv`` naming a command, only that command's module is imported.

    Importing every command module costs about 0.3 s (export, verify and offload pull in
    cryptography's X.509, PyAV and urllib), which a unit pays on every boot of ``bwc run``.
    """
    parser = _Parser(prog="bwc", description="The open body-worn camera.")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)"
    )
    parser.add_argument(
        "--version", action="version", version=f"bwc {__version__}", help="print the version"
    )
    sub = parser.add_subparsers(
        dest="command", required=True, parser_class=_Parser, metavar="COMMAND"
    )
    chosen = _command_named(argv)
    for name, module_name in COMMANDS.items():
        if chosen is None or name == chosen:
            module = importlib.import_module(f"firmware.commands.{module_name}")
            module.add_parser(sub)
    return parser


def _command_named(argv: Sequence[str] | None) -> str | None:
    """The command ``argv`` names (its first word that is not an option), if it is one of ours."""
    words = [a for a in (sys.argv[1:] if argv is None else argv) if not a.startswith("-")]
    return words[0] if words and words[0] in COMMANDS else None


def _command_path(args: argparse.Namespace) -> str:
    """``bwc fw flash``, ``bwc keys agency``: the words that name the command that ran."""
    words = ["bwc", args.command]
    subcommands = ("fw_command", "kind", "verb")
    words += [w for w in (getattr(args, name, None) for name in subcommands) if w]
    return " ".join(words)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser(argv).parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG
        if args.verbose > 1
        else logging.INFO
        if args.verbose
        else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    name = _command_path(args)
    try:
        code: int = args.func(args)
    except UsageError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 2
    except IntegrityError as exc:
        print(f"{name}: integrity failure: {exc}", file=sys.stderr)
        return 1
    except RefusedError as exc:
        print(f"{name}: refused: {exc}", file=sys.stderr)
        return 1
    except BwcError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
