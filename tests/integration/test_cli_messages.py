"""CONTRACT §2 across commands: a missing file is a usage error (exit 2) everywhere, said once.

Runs ``bwc`` in-process (``firmware.cli.main``, the console script's entry point) to stay fast.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from firmware.cli import main
from tests.integration.conftest import SMALL, write_scenario


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("site")
    assert main(["keys", "agency", "--out", str(root / "ag")]) == 0
    assert main(["fw", "keygen", "--out", str(root / "rel")]) == 0
    unit = [str(root / "unit"), "--device-id", "CAM-1", "--officer", "PC-1"]
    pub = str(root / "ag" / "agency-pub.pem")
    assert main(["provision", *unit, "--agency-pub", pub]) == 0
    return root


MISSING = "nope-missing.file"

CASES = {
    "fw flash": "fw flash {m} --device {r}/unit",
    "fw inspect": "fw inspect {m}",
    "fw inspect --trust": "fw inspect {r}/rel/release-pub.pem --trust {m}",
    "fw build payload": "fw build {m} --version 1.0.0 --security-version 1 --compatible bwc-sim "
    "--key {r}/rel/release-key.pem --out {r}/b.bundle",
    "fw build --key": "fw build {r}/rel --version 1.0.0 --security-version 1 --compatible bwc-sim "
    "--key {m} --out {r}/b.bundle",
    "provision --agency-pub": "provision {r}/u2 --agency-pub {m} --device-id X --officer Y",
    "provision --profile": "provision {r}/u3 --agency-pub {r}/ag/agency-pub.pem --device-id X "
    "--officer Y --profile {m}",
    "provision --release-pub": "provision {r}/u4 --agency-pub {r}/ag/agency-pub.pem "
    "--device-id X --officer Y --release-pub {m}",
    "sim": "sim {m} --device {r}/unit",
    "verify": "verify {m}",
    "verify --trust": "verify {r}/unit/evidence --trust {m}",
    "export": "export {m} --key {r}/ag/agency-key.pem --out {r}/e",
    "export --key": "export {r}/unit/evidence --key {m} --out {r}/e",
    "fw status": "fw status --device {m}",
    "offload": "offload --device {m}",
    "run": "run --device {m}",
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_missing_file_is_a_usage_error_named_once(
    case: str, site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = CASES[case].format(m=site / MISSING, r=site).split()
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.count(MISSING) == 1, f"the file is named once: {err}"
    words = " ".join(argv[:2]) if argv[0] == "fw" else argv[0]
    assert err.startswith(f"bwc {words}: "), err


def test_json_answers_parse(site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    capsys.readouterr()
    assert main(["keys", "agency", "--out", str(site / "ag2"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["public_key"].endswith("agency-pub.pem")
    assert main(["fw", "keygen", "--out", str(site / "rel2"), "--json"]) == 0
    keys = json.loads(capsys.readouterr().out)
    assert keys["channel"] == "release"
    build = ["fw", "build", str(site / "ag2"), "--version", "1.0.0", "--security-version", "1"]
    out = ["--compatible", "bwc-sim", "--key", keys["private_key"], "--out", str(site / "j.bwc")]
    assert main([*build, *out, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["manifest"]["version"] == "1.0.0"
    unit = [str(site / "u-json"), "--device-id", "CAM-J", "--officer", "PC-J", "--json"]
    assert main(["provision", *unit, "--agency-pub", str(site / "ag2" / "agency-pub.pem")]) == 0
    assert json.loads(capsys.readouterr().out)["device_id"] == "CAM-J"
    record = write_scenario(
        site / "rec.toml",
        6.0,
        {"at_s": 1.0, "action": "double_press", "button": "event"},
        {"at_s": 2.0, "action": "hold", "button": "event", "hold_s": 3.5},
    )
    sets = [*SMALL, "--set", "recorder.pre_event_s=1"]
    assert main(["sim", str(record), "--device", str(site / "u-json"), *sets, "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["recordings"]) == 1
    evidence = str(site / "u-json" / "evidence")
    key = str(site / "ag2" / "agency-key.pem")
    trust = str(site / "u-json" / "identity" / "device-pub.pem")
    code = main(
        ["export", evidence, "--key", key, "--trust", trust, "--out", str(site / "x"), "--json"]
    )
    assert code == 0
    written = json.loads(capsys.readouterr().out)["written"]
    assert sorted(Path(w).suffix for w in written) == [".json", ".mp4"]


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        ([], "required: COMMAND"),
        (["fw"], "required: SUBCOMMAND"),
        (["keys"], "required: KIND"),
        (["fw", "keygen", "--out", "/proc/no/such/dir"], "--out /proc/no/such/dir: cannot create"),
        (["keys", "agency", "--out", "/proc/no/such/dir"], "/proc/no/such/dir: cannot create"),
    ],
)
def test_usage_errors_are_one_line_in_a_person_s_words(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own usage errors
        code = int(exc.code or 0)
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, err
    assert says in err and err.strip().count("\n") <= 1, err
