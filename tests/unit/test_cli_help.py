"""Every command, subcommand, option and positional of ``bwc`` says what it is for in --help."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from firmware import __version__
from firmware.cli import COMMANDS, build_parser, main


def _walk(
    parser: argparse.ArgumentParser, path: str
) -> Iterator[tuple[str, argparse.Action, argparse.ArgumentParser]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helped = {a.dest: a.help for a in action._choices_actions}
            for name, child in action.choices.items():
                yield f"{path} {name}", _Named(name, helped.get(name)), child
                yield from _walk(child, f"{path} {name}")
        else:
            yield path, action, parser


class _Named(argparse.Action):
    """A subcommand seen as an action, so its help is checked like an option's."""

    def __init__(self, name: str, help_text: str | None) -> None:
        super().__init__([], name, help=help_text)


def _all() -> list[tuple[str, argparse.Action, argparse.ArgumentParser]]:
    return list(_walk(build_parser([]), "bwc"))


def test_the_walk_sees_every_command_and_their_options() -> None:
    found = {path for path, _, _ in _all()}
    for name in COMMANDS:
        assert f"bwc {name}" in found
    for sub in ("keygen", "build", "inspect", "flash", "status"):
        assert f"bwc fw {sub}" in found
    options = {opt for path, a, _ in _all() if path == "bwc fw flash" for opt in a.option_strings}
    assert {"--device", "--dry-run", "--json"} <= options


def test_every_option_positional_and_command_has_help() -> None:
    missing = []
    for path, action, _ in _all():
        if action.help == argparse.SUPPRESS:
            continue
        if not (action.help or "").strip():
            name = "/".join(action.option_strings) or action.metavar or action.dest
            missing.append(f"{path} {name}")
    assert missing == [], "without help text: " + ", ".join(missing)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_of_every_command_exits_0(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert "usage: bwc" in capsys.readouterr().out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"bwc {__version__}"


def test_every_command_a_machine_reads_has_json() -> None:
    """Every leaf command but the interactive daemon (``run``) can answer in JSON."""
    leaves: dict[str, set[str]] = {}
    for path, action, _ in _all():
        if isinstance(action, _Named):
            leaves.setdefault(path, set())
        elif path in leaves:
            leaves[path].update(action.option_strings)
    parents = {p.rsplit(" ", 1)[0] for p in leaves}
    without = sorted(
        p
        for p, opts in leaves.items()
        if p not in parents and p != "bwc run" and "--json" not in opts
    )
    assert without == []
