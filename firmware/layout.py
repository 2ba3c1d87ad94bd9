"""Where everything lives on a unit's storage. One place names every path.

The simulated unit is a directory standing for the SD card; its layout mirrors the real
partition plan (see docs/unit-layout.md):

    DEVICE/boot/            boot control: autoboot.txt, slot states, the armed try-boot (on a Pi
                            this is on the data partition; autoboot.txt there is the root
                            helper's copy of p1's, and autoboot.request a commit request)
    DEVICE/slots/A, B/      simulated only: the two slots (a Pi's are partitions p2+p5, p3+p6)
    DEVICE/identity/        device-key.pem (0600), device-pub.pem, agency/*.pem, release-pub.pem
    DEVICE/config/          profile.toml, unit.json (device id, officer id)
    DEVICE/evidence/        the append-only signed chain (evidence)
    DEVICE/update/          update state: security_version floor, try-boot attempts, logs
    DEVICE/run/             volatile state of the running boot (lock, status, pid)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class UnitLayout:
    root: Path

    @property
    def boot(self) -> Path:
        return self.root / "boot"

    @property
    def slots(self) -> Path:
        return self.root / "slots"

    def slot(self, name: str) -> Path:
        return self.slots / name

    @property
    def identity(self) -> Path:
        return self.root / "identity"

    @property
    def device_key(self) -> Path:
        return self.identity / "device-key.pem"

    @property
    def device_pub(self) -> Path:
        return self.identity / "device-pub.pem"

    @property
    def agency_dir(self) -> Path:
        return self.identity / "agency"

    @property
    def release_pub(self) -> Path:
        return self.identity / "release-pub.pem"

    @property
    def config(self) -> Path:
        return self.root / "config"

    @property
    def profile(self) -> Path:
        return self.config / "profile.toml"

    @property
    def unit_json(self) -> Path:
        return self.config / "unit.json"

    @property
    def evidence(self) -> Path:
        return self.root / "evidence"

    @property
    def update(self) -> Path:
        return self.root / "update"

    @property
    def run(self) -> Path:
        return self.root / "run"

    # Boot control and firmware update state (firmware.boot_control, firmware.update_state).

    @property
    def autoboot_txt(self) -> Path:
        return self.boot / "autoboot.txt"

    @property
    def tryboot_flag(self) -> Path:
        return self.boot / "tryboot"

    @property
    def autoboot_request(self) -> Path:
        """Pi unit: autoboot.txt bytes the recorder asks the root helper to write to p1."""
        return self.boot / "autoboot.request"

    @property
    def slot_state_json(self) -> Path:
        return self.boot / "slot-state.json"

    @property
    def update_state_json(self) -> Path:
        return self.update / "state.json"

    @property
    def boot_json(self) -> Path:
        """What the running (or last) boot chose: slot, try-boot, attempts. Volatile."""
        return self.run / "boot.json"

    @property
    def battery_json(self) -> Path:
        """The simulated battery's current level, written by the running unit."""
        return self.run / "battery.json"

    def is_provisioned(self) -> bool:
        return self.unit_json.is_file() and self.device_key.is_file()
