"""SimPower.cut ends the process at once, with no cleanup, like a pulled battery."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from simulator.power import POWER_CUT_EXIT_STATUS

SCRIPT = """
import atexit, sys
from simulator.clock import VirtualClock
from simulator.power import SimPower
marker = sys.argv[1]
atexit.register(lambda: open(marker + ".atexit", "w").close())
power = SimPower(VirtualClock(0))
try:
    power.cut()
finally:
    open(marker + ".finally", "w").close()
"""


def test_cut_exits_137_without_running_cleanup(tmp_path: Path) -> None:
    marker = tmp_path / "m"
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(marker)], check=False, timeout=60)
    assert result.returncode == POWER_CUT_EXIT_STATUS
    assert not (tmp_path / "m.atexit").exists()
    assert not (tmp_path / "m.finally").exists()
