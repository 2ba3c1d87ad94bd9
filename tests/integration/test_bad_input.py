"""Bad input everywhere: every command answers exit 2 (usage/config) or 1 (integrity) with one
line on stderr naming the problem, and never a traceback.

A verify report goes to stdout; its stderr stays empty or one line. Hostile stores are copies of
one real recording with a file replaced, added or turned into something else.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from firmware.cli import main
from tests.integration.conftest import SMALL, Bwc, ProvisionedUnit, provision_unit, write_scenario


@dataclass
class InProcessBwc:
    """``bwc`` through ``firmware.cli.main`` in this process: the same parser, error mapping and
    exit codes as the console script, without a Python start-up per case. An exception that
    escapes ``main`` fails the test with its traceback, which is what "never a traceback" means."""

    cwd: Path

    def __call__(
        self, *args: str | Path, check: int | None = 0
    ) -> subprocess.CompletedProcess[str]:
        out, err = io.StringIO(), io.StringIO()
        argv = [str(a) for a in args]
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as exc:  # argparse's own usage errors
                code = exc.code if isinstance(exc.code, int) else 2
        proc = subprocess.CompletedProcess(["bwc", *argv], code, out.getvalue(), err.getvalue())
        if check is not None and code != check:
            raise AssertionError(f"bwc {argv} exited {code}: {proc.stderr}")
        return proc


@pytest.fixture
def cli(tmp_path: Path) -> InProcessBwc:
    return InProcessBwc(tmp_path)


def _one_line_error(proc: subprocess.CompletedProcess[str], code: int, *needles: str) -> None:
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == code, (proc.returncode, proc.stdout[-2000:], proc.stderr)
    lines = proc.stderr.strip().splitlines()
    if code == 2 or needles:
        assert len(lines) == 1, proc.stderr
    else:
        assert len(lines) <= 1, proc.stderr
    for needle in needles:
        assert needle in proc.stderr, (needle, proc.stderr)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A provisioned unit with one short recording (module-wide: copied by the tests)."""
    root = tmp_path_factory.mktemp("recorded")
    provision_unit(root, "CAM-BAD-1", "PC-9")
    bwc = Bwc(root)
    scen = write_scenario(
        root / "s.toml",
        8.0,
        {"at_s": 1.0, "action": "double_press"},
        {"at_s": 2.0, "action": "bounce", "button": "function"},
    )
    bwc("sim", scen, "--device", root / "unit", *SMALL, "--set", "recorder.pre_event_s=1")
    return root / "unit", root / "agency" / "agency-key.pem"


# ---------------------------------------------------------------- config, scenario, --set, keys


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[camera\n", "TOML"),
        ("[camera]\nwidth = 'wide'\n", "camera.width"),
        ("[camera]\nzoom = 2\n", "zoom"),
        ("[nonsense]\nx = 1\n", "nonsense"),
        ("[recorder]\npre_event_s = 121.0\n", "pre_event_s"),
        ("[recorder]\npre_event_s = -1\n", "pre_event_s"),
        ("[recorder]\nsegment_s = 1e999\n", "segment_s"),
        ("camera = 3\n", "camera"),
    ],
)
def test_bad_profile_is_one_line_exit_2(
    cli: InProcessBwc, recorded: tuple[Path, Path], tmp_path: Path, text: str, needle: str
) -> None:
    agency_pub = recorded[1].with_name("agency-pub.pem")
    profile = tmp_path / "bad-profile.toml"
    profile.write_text(text)
    proc = cli(
        "provision",
        tmp_path / "other",
        "--agency-pub",
        agency_pub,
        "--device-id",
        "X",
        "--officer",
        "Y",
        "--profile",
        profile,
        check=None,
    )
    _one_line_error(proc, 2, needle)


def test_missing_and_binary_profile(
    cli: InProcessBwc, recorded: tuple[Path, Path], tmp_path: Path
) -> None:
    agency_pub = recorded[1].with_name("agency-pub.pem")
    binary = tmp_path / "binary.toml"
    binary.write_bytes(os.urandom(256) + b"\xff\xfe")
    for profile in (tmp_path / "absent.toml", binary, tmp_path):
        proc = cli(
            "provision",
            tmp_path / "other",
            "--agency-pub",
            agency_pub,
            "--device-id",
            "X",
            "--officer",
            "Y",
            "--profile",
            profile,
            check=None,
        )
        _one_line_error(proc, 2)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("duration_s = [\n", "TOML"),
        ("", "duration_s"),
        ("duration_s = 'long'\n", "duration_s"),
        ("duration_s = 10.0\nspeed = 2\n", "speed"),
        ("duration_s = 10.0\n[[events]]\nat_s = 1.0\naction = 'explode'\n", "action"),
        ("duration_s = 10.0\n[[events]]\nat_s = 11.0\naction = 'press'\n", "at_s"),
        ("duration_s = 10.0\n[[events]]\nat_s = 1.0\naction = 'press'\nbutton = 'x'\n", "button"),
        ("duration_s = 10.0\n[[events]]\nat_s = 1.0\naction = 'battery'\n", "level_pct"),
        (
            "duration_s = 10.0\n[[events]]\nat_s = 1.0\naction = 'gnss_garbage'\ncount = 0\n",
            "count",
        ),
        ("duration_s = 10.0\nevents = 3\n", "events"),
        ("duration_s = nan\n", "duration_s"),
    ],
)
def test_bad_scenario_is_one_line_exit_2(
    cli: InProcessBwc, recorded: tuple[Path, Path], tmp_path: Path, text: str, needle: str
) -> None:
    scen = tmp_path / "bad-scenario.toml"
    scen.write_text(text)
    _one_line_error(cli("sim", scen, "--device", recorded[0], check=None), 2, needle)


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("camera.width=abc", "camera.width"),
        ("camera.width=100", "camera.width"),
        ("camera.bogus=1", "camera.bogus"),
        ("nodot=1", "nodot"),
        ("camera.fps=", "camera.fps"),
        ("recorder.pre_event_s=inf", "pre_event_s"),
        ("recorder.pre_event_s=999999999999999999999999999", "pre_event_s"),
        ("=", "="),
    ],
)
def test_bad_set_is_one_line_exit_2(
    cli: InProcessBwc, recorded: tuple[Path, Path], tmp_path: Path, override: str, needle: str
) -> None:
    scen = write_scenario(tmp_path / "s.toml", 1.0)
    proc = cli("sim", scen, "--device", recorded[0], "--set", override, check=None)
    _one_line_error(proc, 2, needle)


def test_scenario_file_missing_or_a_directory(
    cli: InProcessBwc, recorded: tuple[Path, Path], tmp_path: Path
) -> None:
    for scen in (tmp_path / "absent.toml", tmp_path):
        _one_line_error(cli("sim", scen, "--device", recorded[0], check=None), 2)


def test_device_key_readable_by_others_is_one_clear_line(
    bwc: Bwc, unit: ProvisionedUnit, tmp_path: Path
) -> None:
    (unit.device / "identity" / "device-key.pem").chmod(0o644)
    scen = write_scenario(tmp_path / "s.toml", 1.0)
    proc = bwc("sim", scen, "--device", unit.device, check=None)
    _one_line_error(proc, 2, "device-key.pem", "0600")


def test_damaged_device_key_is_one_line(
    bwc: Bwc, recorded: tuple[Path, Path], tmp_path: Path
) -> None:
    scen = write_scenario(tmp_path / "s.toml", 1.0)
    for damage in ("truncate", "garbage", "empty", "missing", "directory"):
        device = tmp_path / damage
        shutil.copytree(recorded[0], device, symlinks=True)
        key = device / "identity" / "device-key.pem"
        if damage == "truncate":
            key.write_bytes(key.read_bytes()[:60])
        elif damage == "garbage":
            key.write_bytes(b"-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n")
        elif damage == "empty":
            key.write_bytes(b"")
        elif damage == "missing":
            key.unlink()
        else:
            key.unlink()
            key.mkdir()
        proc = bwc("sim", scen, "--device", device, check=None)
        # A missing key means an unprovisioned unit; the line says so and names the device.
        _one_line_error(proc, 2, "device-key" if key.is_file() else str(device))


def _key_cases(recorded: tuple[Path, Path], tmp_path: Path) -> dict[str, Path]:
    device, agency_key = recorded
    agency_pub = agency_key.with_name("agency-pub.pem")
    garbage = tmp_path / "garbage.pem"
    garbage.write_bytes(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    random_pem = tmp_path / "random.pem"
    random_pem.write_bytes(os.urandom(300))
    return {
        "missing": tmp_path / "absent.pem",
        "device key as agency key": device / "identity" / "device-key.pem",
        "public key as private key": agency_pub,
        "corrupted PEM": garbage,
        "random bytes": random_pem,
        "a directory": tmp_path,
    }


def test_bad_agency_key_for_export(
    cli: InProcessBwc, recorded: tuple[Path, Path], tmp_path: Path
) -> None:
    device, _ = recorded
    for name, key in _key_cases(recorded, tmp_path).items():
        proc = cli(
            "export",
            device / "evidence",
            "--key",
            key,
            "--out",
            tmp_path / "o",
            "--trust",
            device / "identity" / "device-pub.pem",
            check=None,
        )
        assert proc.returncode in (1, 2), name
        _one_line_error(proc, proc.returncode, str(key))


def test_bad_agency_pub_for_provision(
    cli: InProcessBwc, recorded: tuple[Path, Path], tmp_path: Path
) -> None:
    cases = _key_cases(recorded, tmp_path)
    del cases["public key as private key"]  # that one is right for provision
    cases["private key as public key"] = recorded[1]
    cases["device public key"] = recorded[0] / "identity" / "device-pub.pem"
    for i, (name, key) in enumerate(cases.items()):
        proc = cli(
            "provision",
            tmp_path / f"u{i}",
            "--agency-pub",
            key,
            "--device-id",
            "X",
            "--officer",
            "Y",
            check=None,
        )
        _one_line_error(proc, 2)
        assert name


def test_bad_trust_file_for_verify(
    cli: InProcessBwc, recorded: tuple[Path, Path], tmp_path: Path
) -> None:
    device, _ = recorded
    for key in _key_cases(recorded, tmp_path).values():
        proc = cli("verify", device / "evidence", "--trust", key, check=None)
        assert proc.returncode in (1, 2)
        _one_line_error(proc, proc.returncode)


# ---------------------------------------------------------------- hostile evidence


def _first(store: Path, kind: str) -> Path:
    for path in sorted(store.glob("[0-9]*.json")):
        m = json.loads(path.read_bytes())
        if m["type"] == kind:
            return path
    raise AssertionError(kind)


def _deep(path: Path) -> None:
    path.write_bytes(b"[" * 200_000 + b"]" * 200_000)


def _deep_dict(path: Path) -> None:
    path.write_bytes(b'{"a":' * 100_000 + b"1" + b"}" * 100_000)


def _huge_int(path: Path) -> None:
    m = json.loads(path.read_bytes())
    text = json.dumps(m).replace(f'"seq": {m["seq"]}', '"seq": ' + "9" * 50_000)
    path.write_text(text)


def _huge_sizes(path: Path) -> None:
    m = json.loads(path.read_bytes())
    m["payload"]["size"] = 10**30
    m["first_frame"] = -(10**30)
    m["frame_count"] = 10**18
    path.write_text(json.dumps(m))


def _wrong_types(path: Path) -> None:
    m = json.loads(path.read_bytes())
    for k in list(m):
        m[k] = [m[k]] if k != "type" else m[k]
    path.write_text(json.dumps(m))


def _symlink_out(path: Path) -> None:
    path.unlink()
    path.symlink_to("/etc/passwd")


def _symlink_loop(path: Path) -> None:
    path.unlink()
    path.symlink_to(path.name)


def _dir_named_like_entry(path: Path) -> None:
    store = path.parent
    n = max(int(p.name[:10]) for p in store.glob("[0-9]*.json")) + 1
    (store / f"{n:010d}.json").mkdir()
    (store / f"{n:010d}.bin").mkdir()


def _random_bytes(path: Path) -> None:
    path.write_bytes(os.urandom(4096))


def _nan(path: Path) -> None:
    path.write_text(path.read_text().replace('"seq":', '"nan": NaN, "seq":', 1))


def _fifo(path: Path) -> None:
    store = path.parent
    n = max(int(p.name[:10]) for p in store.glob("[0-9]*.json")) + 1
    os.mkfifo(store / f"{n:010d}.json")


def _far_entry(path: Path) -> None:
    (path.parent / "9999999999.json").write_text("{}")


HOSTILE: dict[str, tuple[str, Callable[[Path], None]]] = {
    "random bytes manifest": ("event", _random_bytes),
    "random bytes payload": ("unit-bin", _random_bytes),
    "deeply nested list": ("unit", _deep),
    "deeply nested object": ("event", _deep_dict),
    "huge integer": ("unit", _huge_int),
    "huge sizes": ("unit", _huge_sizes),
    "wrong types": ("unit", _wrong_types),
    "NaN in manifest": ("event", _nan),
    "symlink out of the store": ("unit", _symlink_out),
    "symlink loop": ("event", _symlink_loop),
    "directory named like an entry": ("event", _dir_named_like_entry),
    "fifo named like an entry": ("event", _fifo),
    "entry number ten billion": ("event", _far_entry),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_store_never_crashes_verify_or_export(
    cli: InProcessBwc, recorded: tuple[Path, Path], tmp_path: Path, case: str
) -> None:
    device, agency_key = recorded
    store = tmp_path / "evidence"
    shutil.copytree(device / "evidence", store, symlinks=True)
    target, damage = HOSTILE[case]
    if target == "unit-bin":
        victim = _first(store, "unit").with_suffix(".bin")
    else:
        victim = _first(store, target)
    damage(victim)

    verify = cli("verify", store, "--trust", device / "identity" / "device-pub.pem", check=None)
    assert "Traceback" not in verify.stderr, verify.stderr
    assert verify.returncode in (1, 2), (case, verify.stdout[-1500:])
    assert len(verify.stderr.strip().splitlines()) <= 1, verify.stderr
    if case in ("deeply nested list", "directory named like an entry"):
        as_json = cli(
            "verify", store, "--json", "--trust", device / "identity" / "device-pub.pem", check=None
        )
        assert "Traceback" not in as_json.stderr
        assert as_json.returncode == verify.returncode == 1
        assert json.loads(as_json.stdout)["intact"] is False

    export = cli(
        "export",
        store,
        "--key",
        agency_key,
        "--out",
        tmp_path / "out",
        "--trust",
        device / "identity" / "device-pub.pem",
        check=None,
    )
    _one_line_error(export, verify.returncode)
    assert not list((tmp_path / "out").glob("*.mp4")) if (tmp_path / "out").exists() else True


def test_bounce_does_not_start_a_recording(bwc: Bwc, unit: ProvisionedUnit, tmp_path: Path) -> None:
    scen = write_scenario(
        tmp_path / "s.toml",
        6.0,
        {"at_s": 1.0, "action": "bounce", "button": "event"},
        {"at_s": 3.0, "action": "bounce", "button": "event"},
        {"at_s": 4.0, "action": "bounce", "button": "function"},
    )
    bwc("sim", scen, "--device", unit.device, *SMALL)
    report = bwc.json("verify", unit.device / "evidence", "--json", *unit.trust)
    assert report["intact"] is True
    assert report["recordings"] == []


def test_gnss_garbage_is_counted_never_fatal(
    bwc: Bwc, unit: ProvisionedUnit, tmp_path: Path
) -> None:
    scen = write_scenario(
        tmp_path / "s.toml",
        20.0,
        {"at_s": 1.0, "action": "double_press"},
        {"at_s": 3.0, "action": "gnss_garbage", "count": 5000},
        {"at_s": 8.0, "action": "gnss_garbage", "count": 100_000},
        {"at_s": 15.0, "action": "hold", "hold_s": 3.5},
    )
    proc = bwc("sim", scen, "--device", unit.device, *SMALL, "--set", "recorder.pre_event_s=1")
    assert "Traceback" not in proc.stderr
    report = bwc.json("verify", unit.device / "evidence", "--json", *unit.trust)
    assert report["intact"] is True
    (rec,) = report["recordings"]
    assert rec["stop_trigger"] == "hold"
    assert rec["gnss"], "fixes still arrive between the garbage"


def test_hostile_store_through_the_console_script(
    bwc: Bwc, recorded: tuple[Path, Path], tmp_path: Path
) -> None:
    """The in-process runner above is the same code; this proves the real process path once."""
    device, agency_key = recorded
    store = tmp_path / "evidence"
    shutil.copytree(device / "evidence", store, symlinks=True)
    _deep(_first(store, "unit"))
    _symlink_loop(_first(store, "event"))
    verify = bwc(
        "verify", store, "--json", "--trust", device / "identity" / "device-pub.pem", check=None
    )
    assert "Traceback" not in verify.stderr
    assert verify.returncode == 1
    assert json.loads(verify.stdout)["intact"] is False
    export = bwc(
        "export",
        store,
        "--key",
        agency_key,
        "--out",
        tmp_path / "out",
        "--trust",
        device / "identity" / "device-pub.pem",
        check=None,
    )
    _one_line_error(export, 1)
