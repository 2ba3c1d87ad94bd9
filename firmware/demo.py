"""`make run`: provision a demo unit on first use, then run the recorder on the simulated unit.

The demo agency key pair lives beside the unit (``.demo/agency/``) so a newcomer can verify and
export what they recorded. A real agency keeps its private key off every unit (HSM or vault).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from firmware.cli import main as bwc_main
from firmware.layout import UnitLayout

DEMO_DEVICE_ID = "DEMO-0001"
DEMO_OFFICER_ID = "DEMO-OFFICER"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make run", description=__doc__)
    parser.add_argument(
        "--device", type=Path, default=Path(".demo/unit"), help="the demo unit (default .demo/unit)"
    )
    parser.add_argument(
        "--duration-s", type=float, default=None, help="power off after this many seconds"
    )
    args = parser.parse_args(argv)
    layout = UnitLayout(args.device)
    agency = args.device.parent / "agency"
    agency_key = agency / "agency-key.pem"
    if not layout.is_provisioned():
        print(f"First run: provisioning a demo unit in {args.device}")
        if not (agency / "agency-pub.pem").exists():
            code = bwc_main(["keys", "agency", "--out", str(agency)])
            if code:
                return code
        code = bwc_main(
            [
                "provision",
                str(args.device),
                "--agency-pub",
                str(agency / "agency-pub.pem"),
                "--device-id",
                DEMO_DEVICE_ID,
                "--officer",
                DEMO_OFFICER_ID,
            ]
        )
        if code:
            return code
        print(f"Demo agency keys: {agency_key} (private) and {agency}/agency-pub.pem")
    print(
        "Keys press the simulated buttons (listed under the status). At power off (q) the\n"
        "bwc verify and bwc export commands for what the unit then holds are printed."
    )
    run_args = ["run", "--device", str(args.device), "--hint-agency-key", str(agency_key)]
    if args.duration_s is not None:
        run_args += ["--duration-s", str(args.duration_s)]
    return bwc_main(run_args)


if __name__ == "__main__":
    sys.exit(main())
