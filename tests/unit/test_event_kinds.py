"""Every event kind the unit's code can seal is named in ``evidence.records.EventKind``.

The sealer refuses any other kind at run time; this walks the source so that a new kind fails here,
in CI, and never in the field where the refusal would cost an event. It finds each call that
hands a kind to the sealer (``.event(kind, ...)``, the recorder's ``_event``, the firmware's owed
events, the timestamp anchor's ``_seal_quietly``) and resolves its kind argument: a string
literal, or a module constant such as ``offload.plan.RECEIPT_KIND``. A kind passed through a
variable is only allowed inside the few forwarding functions listed below, whose own callers are
checked in turn.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

from evidence.records import EventKind

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("recorder", "firmware", "evidence", "offload", "simulator", "report")

KIND_ARGUMENT = {"event": 0, "_event": 0, "with_event": 0, "owe_event": 1, "_seal_quietly": 1}
"""Callable name -> position of its event-kind argument."""

FORWARDERS = {
    ("recorder/core.py", "_event"),  # the recorder's one door to the sealer
    ("firmware/evidence_access.py", "event"),  # record_boot's local helper
    ("firmware/update_state.py", "owe_event"),  # stores the kind for drain_events
    ("firmware/update_state.py", "drain_events"),  # seals what owe_event stored
    ("evidence/timestamp.py", "_seal_quietly"),
}
"""Functions that pass a kind given to them on to the sealer; their callers are checked."""


def _resolve(module: str, node: ast.expr) -> str | None:
    """The string a kind argument names, or None if it is a variable (not a constant)."""
    if isinstance(node, ast.Constant):
        return node.value if isinstance(node.value, str) else repr(node.value)
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.insert(0, node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    value: object = importlib.import_module(module)
    for name in [node.id, *parts]:
        if not hasattr(value, name):
            return None
        value = getattr(value, name)
    return value if isinstance(value, str) else None


def _calls_by_innermost_function(tree: ast.Module) -> list[tuple[str, ast.Call]]:
    """Every call with the name of the function it is written in (module level: "")."""
    out: list[tuple[str, ast.Call]] = []

    def visit(node: ast.AST, func: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                visit(child, child.name)
                continue
            if isinstance(child, ast.Call):
                out.append((func, child))
            visit(child, func)

    visit(tree, "")
    return out


def _call_sites() -> tuple[list[tuple[str, int, str]], set[tuple[str, str]], list[str]]:
    kinds: list[tuple[str, int, str]] = []
    forwarding: set[tuple[str, str]] = set()
    unresolved: list[str] = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            module = rel[:-3].replace("/", ".")
            tree = ast.parse(path.read_text(encoding="utf-8"), rel)
            for func, call in _calls_by_innermost_function(tree):
                f = call.func
                name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", None)
                pos = KIND_ARGUMENT.get(name or "")
                if pos is None or len(call.args) <= pos:
                    continue
                kind = _resolve(module, call.args[pos])
                if kind is not None:
                    kinds.append((rel, call.lineno, kind))
                elif (rel, func) in FORWARDERS:
                    forwarding.add((rel, func))
                else:
                    unresolved.append(f"{rel}:{call.lineno} in {func}()")
    return kinds, forwarding, unresolved


def test_every_kind_the_code_seals_is_an_event_kind() -> None:
    kinds, _forwarding, _unresolved = _call_sites()
    known = {k.value for k in EventKind}
    unknown = [f"{rel}:{line}: {kind!r}" for rel, line, kind in kinds if kind not in known]
    assert not unknown, "event kinds not named in evidence.records.EventKind:\n" + "\n".join(
        unknown
    )
    # The walk found the call sites it exists for (a rename must not make it vacuous).
    found = {kind for _rel, _line, kind in kinds}
    assert {"boot", "record_start", "marker", "offload_receipt", "timestamp_token"} <= found
    assert {"firmware_install", "firmware_commit", "daemon_restart", "leftovers_moved"} <= found
    assert len(kinds) >= 25


def test_a_kind_passed_through_a_variable_is_only_forwarded_by_the_listed_functions() -> None:
    _kinds, forwarding, unresolved = _call_sites()
    assert not unresolved, "event kind not a literal or a module constant:\n" + "\n".join(
        unresolved
    )
    assert forwarding == FORWARDERS, "a listed forwarder no longer forwards; update the list"


def test_the_walk_would_catch_an_unknown_kind() -> None:
    tree = ast.parse("def f(sink):\n    sink.event('gnss_fix', {})\n")
    (call,) = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
    assert _resolve("evidence.records", call.args[0]) == "gnss_fix"
    assert "gnss_fix" not in {k.value for k in EventKind}
