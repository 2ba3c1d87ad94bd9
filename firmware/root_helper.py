"""The Pi unit's privileged steps, behind a narrow interface run as root by systemd.

The recorder runs as ``bwc`` with ``NoNewPrivileges`` and ``ProtectSystem=strict``: it can neither
write the boot-select partition nor reboot. It writes requests on the data partition instead, and
this helper (``bwc bootctl``, run by ``bwc-bootsel.service`` before the recorder at every boot and
by ``bwc-bootsel.path`` whenever a request appears) carries them out:

- ``sync``: apply a pending ``boot/autoboot.request`` (only the canonical text naming a slot that
  is installed or good), then refresh the mirror ``boot/autoboot.txt`` the recorder reads.
- ``tryboot``: ``reboot "0 tryboot"``, only when a try-boot is armed on an installed slot that
  ``[tryboot]`` selects. Never run from a health check: the helper reboots only when asked.

It takes no paths or slot names from its caller beyond the unit directory; everything else it
reads from files it validates. It never writes slot contents or the evidence store.
"""

from __future__ import annotations

import logging

from firmware.boot_control import PiBootControl, parse_autoboot, render_autoboot
from firmware.layout import UnitLayout
from hal.durable import remove_durably
from hal.errors import IntegrityError

log = logging.getLogger(__name__)

REQUEST_MAX_BYTES = 512


def sync(layout: UnitLayout, boot: PiBootControl) -> list[str]:
    """Apply a pending autoboot request and refresh the mirror; returns what was done."""
    notes: list[str] = []
    request = layout.autoboot_request
    primary = boot.get_primary()  # reads p1, refreshing the mirror
    if request.is_file():
        data = request.read_bytes()[: REQUEST_MAX_BYTES + 1]
        try:
            wanted = parse_autoboot(data, str(request)).primary
            if data != render_autoboot(wanted):
                raise IntegrityError("not the canonical autoboot.txt", path=str(request))
            if boot.get_state(wanted) not in ("installed", "good"):
                raise IntegrityError(f"slot {wanted} is {boot.get_state(wanted)}", path="")
        except IntegrityError as exc:
            notes.append(f"refused the autoboot request: {exc}")
        else:
            if wanted != primary:
                boot.set_primary(wanted)
                notes.append(f"slot {wanted} is now the primary")
            else:
                notes.append(f"slot {wanted} was already the primary")
        remove_durably(request)
    for note in notes:
        log.info("bootctl: %s", note)
    return notes


def tryboot(boot: PiBootControl) -> None:
    """Reboot into the armed try-boot (``RefusedError`` if none is armed and installed)."""
    boot.reboot_into_tryboot()
