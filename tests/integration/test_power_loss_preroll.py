"""A power cut inside the pre-roll flush: the officer pressed after a full 30-second pre-event
buffer, ``record_start`` is sealed, and the battery goes while the buffer's units are being sealed.

The pre-event buffer is RAM-only by design, so its unsealed part is lost; this test pins what the
unit still guarantees there (the loss is explained by signed events, everything sealed verifies and
exports contiguously, live loss stays within a second) and measures the pre-event loss.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.integration.conftest import Bwc, ProvisionedUnit, write_scenario
from tests.integration.faults import (
    FPS,
    MAX_LOSS_S,
    KillPlan,
    committed_entries,
    read_manifests,
    run_and_kill,
    set_args,
)

PRE_EVENT_S = 30.0


def test_cut_inside_the_preroll_flush_is_explained(
    bwc: Bwc, unit: ProvisionedUnit, tmp_path: Path
) -> None:
    extra = {"recorder.pre_event_s": f"{PRE_EVENT_S:g}"}
    scen = write_scenario(tmp_path / "s.toml", 60.0, {"at_s": 40.0, "action": "double_press"})
    store = unit.device / "evidence"
    # boot + buffering + record_start: kill as soon as record_start is committed.
    plan = KillPlan(seed=0, entries=committed_entries(store) + 3)
    cut = run_and_kill(unit.device, scen, plan, tmp_path, extra_sets=extra)
    assert cut.killed and cut.last_frame is not None

    bwc("sim", write_scenario(tmp_path / "short.toml", 2.0), "--device", unit.device,
        *set_args(extra))  # fmt: skip
    manifests = read_manifests(store)
    kinds = [m.get("kind") for m in manifests if m["type"] == "event"]
    assert "power_loss_discovered" in kinds
    start = next(m for m in manifests if m.get("kind") == "record_start")
    (stop,) = [m for m in manifests if m.get("kind") == "record_stop"]
    assert stop["fields"]["trigger"] == "power_loss_recovery"
    report = bwc.json("verify", *unit.trust, store, "--json")
    assert report["intact"] is True

    first = int(start["fields"]["first_frame"])
    preroll_last = round(int(start["mono_us"]) * FPS / 1e6) - 1
    units = [m for m in manifests if m["type"] == "unit"]
    sealed_last = max((m["first_frame"] + m["frame_count"] - 1 for m in units), default=first - 1)
    preroll_loss_s = max(0, preroll_last - sealed_last) / FPS
    live_loss_s = max(0, cut.last_frame - max(sealed_last, preroll_last)) / FPS
    figures = {
        "pre_event_s": PRE_EVENT_S,
        "preroll_units_sealed": len(units),
        "preroll_loss_s": preroll_loss_s,
        "live_loss_s": live_loss_s,
    }
    print(json.dumps(figures))
    assert live_loss_s <= MAX_LOSS_S, figures
    assert preroll_loss_s <= PRE_EVENT_S + 1.0 + MAX_LOSS_S, figures
    if units:
        bwc("export", *unit.trust, store, "--key", unit.agency_key, "--out", tmp_path / "out")
