"""Fault-injection harness: kill a running simulated unit from outside, boot it again, judge it.

One trial: start ``bwc -vv sim`` on a long scenario (recordings open most of the time, small
segments and units), SIGKILL it at a seeded random moment (when the store's committed entry count
reaches N, or after a random wall delay), boot the same storage again with a short scenario, then
check with ``bwc verify`` / ``bwc export`` and the store's own plain-JSON manifests that the power
loss is discovered and explained, every exported recording's frame stripe is contiguous, the
recording open at the cut lost at most about the unit being written, and the unit buffers again.

The last frame the unit captured before the kill comes from its DEBUG frame trace on stderr
(``firmware.sim_unit.frames``): a pipe keeps whatever was written before SIGKILL. This module is
test support: it must not import the unit's code (it drives ``bwc`` as a user would), except the
simulator's stripe reader to decode exported video.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simulator.h264 import read_frame_numbers

FPS = 30.0
UNIT_S = 1.0
PRE_EVENT_S = 5.0
SETTINGS = {
    "camera.width": "512",
    "camera.height": "288",
    "camera.fps": f"{FPS:g}",
    "camera.bitrate_bps": "600000",
    "recorder.segment_s": "3.0",
    "recorder.unit_s": f"{UNIT_S:g}",
    "recorder.pre_event_s": f"{PRE_EVENT_S:g}",
}
"""Every boot of a trial runs with these: small frames, 3 s segments, 1 s sealing units."""

LONG_SCENARIO = """\
duration_s = 48.0
[[events]]
at_s = 1.0
action = "double_press"
[[events]]
at_s = 5.0
action = "press"
button = "function"
[[events]]
at_s = 12.0
action = "hold"
hold_s = 3.5
[[events]]
at_s = 17.5
action = "double_press"
[[events]]
at_s = 21.0
action = "press"
button = "function"
[[events]]
at_s = 29.0
action = "hold"
hold_s = 3.5
[[events]]
at_s = 33.5
action = "double_press"
[[events]]
at_s = 40.0
action = "press"
button = "function"
"""
"""A shift slice with a recording open about 85 % of the time; the last one is still open at
the end (the orderly power-off stops it). About 60 committed entries on a clean run
(units of one second, three to a segment, three recordings, markers and events)."""

SHORT_SCENARIO = "duration_s = 3.0\n"
"""The next boot: power on, buffer for three seconds, power off."""

MAX_LOSS_S = UNIT_S + 2.0 / FPS
"""The brief's rule: at most the unit being written is lost (plus the frame in flight). A cut
inside the pre-roll flush right after a press also loses the unsealed part of the pre-event
buffer (RAM only by design); that is measured separately (``preroll_loss_s``)."""

_FRAME_LINE = re.compile(r"captured frame (\d+) pts_us (\d+)")


def bwc_argv(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "firmware.cli", *map(str, args)]


def set_args(extra: dict[str, str] | None = None) -> list[str]:
    out: list[str] = []
    for key, value in {**SETTINGS, **(extra or {})}.items():
        out += ["--set", f"{key}={value}"]
    return out


def committed_entries(store: Path) -> int:
    """Committed manifests in the store (a manifest's rename is the commit point)."""
    try:
        return sum(1 for e in os.scandir(store) if e.name.endswith(".json") and e.name[0] != ".")
    except FileNotFoundError:
        return 0


def read_manifests(store: Path) -> list[dict[str, Any]]:
    """Every committed manifest of the store, in chain (sequence) order."""
    out = []
    for path in sorted(store.glob("[0-9]*.json")):
        obj = json.loads(path.read_bytes())
        if isinstance(obj, dict):
            out.append(obj)
    return sorted(out, key=lambda m: int(m["seq"]))


@dataclass(frozen=True)
class KillPlan:
    """When to pull the battery: at ``entries`` committed manifests, or after ``delay_s``."""

    seed: int
    entries: int | None = None
    delay_s: float | None = None

    @classmethod
    def draw(cls, seed: int, baseline_entries: int) -> KillPlan:
        rng = random.Random(seed)
        if rng.random() < 0.7:
            # Aimed: the moment right after the N-th commit lands in whatever the unit does next
            # (the next unit's encryption, a segment rollover, an event, the pre-roll flush).
            return cls(seed, entries=baseline_entries + rng.randint(1, 58))
        return cls(seed, delay_s=rng.uniform(0.3, 6.0))


@dataclass
class Cut:
    """What the killed run left: whether it was killed, and its last traced frame."""

    killed: bool
    returncode: int
    last_frame: int | None
    entries_at_kill: int
    stderr_tail: list[str] = field(default_factory=list)


def run_and_kill(
    device: Path,
    scenario: Path,
    plan: KillPlan,
    cwd: Path,
    poll_s: float = 0.002,
    extra_sets: dict[str, str] | None = None,
) -> Cut:
    """Run ``bwc -vv sim`` and SIGKILL it per ``plan``; returns what it traced before dying."""
    proc = subprocess.Popen(
        bwc_argv("-vv", "sim", scenario, "--device", device, *set_args(extra_sets)),
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    last_frame: list[int | None] = [None]
    tail: list[str] = []

    def read_stderr() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            m = _FRAME_LINE.search(line)
            if m:
                last_frame[0] = int(m.group(1))
            else:
                tail.append(line.rstrip("\n"))
                del tail[:-40]

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    store = device / "evidence"
    deadline = time.monotonic() + (plan.delay_s if plan.delay_s is not None else 600.0)
    killed = False
    while proc.poll() is None:
        if plan.entries is not None and committed_entries(store) >= plan.entries:
            break
        if time.monotonic() >= deadline:
            break
        time.sleep(poll_s)
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
        killed = True
    rc = proc.wait()
    reader.join(timeout=30)
    return Cut(killed and rc == -signal.SIGKILL, rc, last_frame[0], committed_entries(store), tail)


@dataclass
class TrialResult:
    seed: int
    plan: KillPlan
    cut: Cut
    open_recording: str | None = None
    loss_s: float = 0.0
    """Live recording lost at the cut (frames captured after the press, not sealed)."""
    preroll_loss_s: float = 0.0
    """Pre-event buffer lost because the cut came inside the pre-roll flush after the press."""
    recordings: int = 0
    failures: list[str] = field(default_factory=list)

    def describe(self) -> str:
        return (
            f"seed {self.seed} plan {self.plan} killed={self.cut.killed} rc={self.cut.returncode} "
            f"last_frame={self.cut.last_frame} entries={self.cut.entries_at_kill} "
            f"open={self.open_recording} loss_s={self.loss_s:.3f} "
            f"preroll_loss_s={self.preroll_loss_s:.3f}: "
            + "; ".join(self.failures)
            + ("\nstderr tail:\n" + "\n".join(self.cut.stderr_tail) if self.failures else "")
        )


def _run(cwd: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        bwc_argv(*args), cwd=cwd, capture_output=True, text=True, timeout=600, check=False
    )


def run_trial(workdir: Path, template: Path, agency_key: Path, seed: int) -> TrialResult:
    """One kill-and-reboot trial on a fresh copy of the provisioned unit ``template``."""
    workdir.mkdir(parents=True, exist_ok=True)
    long_path = workdir / "long.toml"
    short_path = workdir / "short.toml"
    long_path.write_text(LONG_SCENARIO)
    short_path.write_text(SHORT_SCENARIO)
    device = workdir / "unit"
    shutil.copytree(template, device, symlinks=True)
    store = device / "evidence"
    before = {m["seq"] for m in read_manifests(store)}
    plan = KillPlan.draw(seed, committed_entries(store))
    cut = run_and_kill(device, long_path, plan, workdir)
    result = TrialResult(seed, plan, cut)
    fail = result.failures.append
    if not cut.killed and cut.returncode != 0:
        fail(f"the long run exited {cut.returncode} before the kill")
    killed_run = [m for m in read_manifests(store) if m["seq"] not in before]

    reboot = _run(workdir, "sim", short_path, "--device", device, *set_args())
    if reboot.returncode != 0 or "Traceback" in reboot.stderr:
        fail(f"reboot exited {reboot.returncode}: {reboot.stderr.strip()[-400:]}")
        return result
    manifests = [m for m in read_manifests(store) if m["seq"] not in before]
    boots = list(dict.fromkeys(m["boot"] for m in manifests))
    reboot_entries = [m for m in manifests if boots and m["boot"] == boots[-1]]
    kinds = [m.get("kind") for m in reboot_entries if m["type"] == "event"]

    # The power loss is discovered and explained, and the unit buffers again after it. A kill
    # that lands after the run's own shutdown entry was committed (the process was exiting) is
    # a clean end: the next boot must not call it a power loss.
    clean_end = bool(killed_run) and killed_run[-1].get("kind") == "shutdown"
    if killed_run and cut.killed and not clean_end:
        if "power_loss_discovered" not in kinds:
            fail(f"no power_loss_discovered on the next boot (events {kinds})")
        elif "buffering" not in kinds[kinds.index("power_loss_discovered") :]:
            fail(f"no buffering after power_loss_discovered (events {kinds})")
        else:
            # Leftovers of the interrupted write are named in the signed event and kept aside.
            (loss,) = [m for m in reboot_entries if m.get("kind") == "power_loss_discovered"]
            missing = [o for o in loss["fields"]["orphans"] if not (store / o).is_file()]
            if missing:
                fail(f"orphans named in power_loss_discovered are not in the store: {missing}")
            stray = [p.name for p in store.iterdir() if p.name.startswith(".")]
            if stray:
                fail(f"temp files left in the store after the reboot: {stray}")
    else:
        if clean_end and "power_loss_discovered" in kinds:
            fail(f"a clean shutdown was reported as a power loss (events {kinds})")
        if "buffering" not in kinds:
            fail(f"the next boot did not reach buffering (events {kinds})")

    trust = ("--trust", device / "identity" / "device-pub.pem")
    verify = _run(workdir, "verify", store, "--json", *trust)
    if verify.returncode != 0 or "Traceback" in verify.stderr:
        fail(f"verify exited {verify.returncode}: {verify.stderr.strip()[-400:]}")
        return result
    report = json.loads(verify.stdout)
    by_id = {r["id"]: r for r in report["recordings"]}
    result.recordings = len(by_id)
    for r in by_id.values():
        unexplained = [g for g in r.get("gaps", []) if not g.get("explained", True)]
        if unexplained:
            fail(f"recording {r['id']} has unexplained gaps {unexplained}")

    # The recording open at the cut: closed by a record_stop(power_loss_recovery) on reboot.
    stops = [
        m["fields"]
        for m in reboot_entries
        if m["type"] == "event"
        and m.get("kind") == "record_stop"
        and m["fields"].get("trigger") == "power_loss_recovery"
    ]
    if stops:
        rid = str(stops[0]["recording"])
        result.open_recording = rid
        starts = [
            m
            for m in killed_run
            if m["type"] == "event"
            and m.get("kind") == "record_start"
            and m["fields"].get("recording") == rid
        ]
        sealed_last = by_id[rid]["last_frame"] if rid in by_id else None
        if sealed_last is None and starts:
            # Nothing of it was sealed: everything from its first (pre-event) frame is the loss.
            first = starts[0]["fields"].get("first_frame")
            if isinstance(first, int):
                sealed_last = first - 1
        if cut.last_frame is None or sealed_last is None:
            fail(f"cannot place the cut (last traced {cut.last_frame}, sealed {sealed_last})")
        else:
            # Frames before record_start are the pre-event buffer (RAM only until the pre-roll
            # flush after the press has sealed them); frames after it are live recording.
            preroll_last = round(int(starts[0]["mono_us"]) * FPS / 1e6) - 1 if starts else -1
            sealed_last = int(sealed_last)
            if sealed_last < preroll_last:
                result.preroll_loss_s = (preroll_last - sealed_last) / FPS
                sealed_last = preroll_last
            result.loss_s = max(0, cut.last_frame - sealed_last) / FPS
            if result.loss_s > MAX_LOSS_S:
                fail(
                    f"recording {rid} lost {result.loss_s:.3f} s at the cut (last frame "
                    f"captured {cut.last_frame}, last sealed {sealed_last})"
                )
            if result.preroll_loss_s > PRE_EVENT_S + MAX_LOSS_S:
                fail(f"recording {rid} lost {result.preroll_loss_s:.3f} s of pre-event buffer")

    export_dir = workdir / f"export-{seed}"
    export = _run(workdir, "export", store, "--key", agency_key, "--out", export_dir, *trust)
    if export.returncode != 0 or "Traceback" in export.stderr:
        fail(f"export exited {export.returncode}: {export.stderr.strip()[-400:]}")
        return result
    for rid, rec in by_id.items():
        if not rec.get("units"):
            continue
        mp4 = export_dir / f"{rid}.mp4"
        if not mp4.exists():
            fail(f"export wrote no {mp4.name}")
            continue
        frames = read_frame_numbers(mp4)
        expected = list(range(rec["first_frame"], rec["last_frame"] + 1))
        if frames != expected:
            fail(
                f"recording {rid}: stripe not contiguous {rec['first_frame']}-{rec['last_frame']}"
                f" (decoded {len(frames)} frames, first {frames[:1]}, last {frames[-1:]})"
            )
    return result
