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
    parser.add_argument("--device", type=Path, default=Path(".demo/unit"))
    parser.add_argument("--duration-s", type=float, default=None)
    args = parser.parse_args(argv)
    layout = UnitLayout(args.device)
    agency = args.device.parent / "agency"
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
        print(f"Demo agency keys: {agency}/agency-key.pem (private) and agency-pub.pem")
    dock = args.device.parent / "dock" / DEMO_DEVICE_ID
    key = f"--key {agency}/agency-key.pem"
    trust = f"--trust {layout.device_pub}"
    print(
        "When you are done, check and play what you recorded:\n"
        f"  .venv/bin/bwc verify {layout.evidence} {trust} --allow-freed\n"
        f"  .venv/bin/bwc export {layout.evidence} {key} --out exported {trust}\n"
        "After docking (d) the video lives on the dock share; verify and export it there:\n"
        f"  .venv/bin/bwc verify {dock} {trust}\n"
        f"  .venv/bin/bwc export {dock} {key} --out exported-dock {trust}\n"
    )
    run_args = ["run", "--device", str(args.device)]
    if args.duration_s is not None:
        run_args += ["--duration-s", str(args.duration_s)]
    return bwc_main(run_args)


if __name__ == "__main__":
    sys.exit(main())
