"""The unit loads only what buffering and sealing need (issue #16: fit a small Pi's memory).

A fresh interpreter imports the Pi unit's composition root and the shared boot path, as `bwc run`
does on a unit, and must not have loaded the dock's S3 client, the agency's verification and
export code, the simulator's image libraries or the technician's terminal UI: those are imported
where they are used (a dock round, `bwc verify`, the simulated camera, `bwc run`'s live view).
"""

from __future__ import annotations

import json
import subprocess
import sys

UNIT_MODULES = ("firmware.pi_unit", "firmware.boot", "firmware.daemon", "recorder.core")
NOT_ON_THE_UNIT = (
    "boto3",
    "botocore",
    "numpy",
    "cv2",
    "rich",
    "simulator",
    "offload",
    "evidence.verify",
    "evidence.export",
    "evidence.opener",
    "evidence.remux",
    "report",
)


def test_the_unit_boot_path_loads_no_dock_verify_or_image_code() -> None:
    probe = (
        "import importlib, json, sys\n"
        f"for m in {UNIT_MODULES!r}: importlib.import_module(m)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True)
    loaded = set(json.loads(out.stdout))
    for module in UNIT_MODULES:
        assert module in loaded
    found = sorted(
        m for m in loaded if any(m == bad or m.startswith(f"{bad}.") for bad in NOT_ON_THE_UNIT)
    )
    assert found == [], f"the unit's boot imports {found}"
