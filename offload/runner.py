"""One offload round: send every unconfirmed file of an evidence store to a target, record the
receipts as signed events, then free the space of confirmed payloads.

Invariants, in the order the round keeps them:
1. A file counts as offloaded only after ``target.confirm`` accepted its receipt.
2. Confirmed files are named in a signed ``offload_receipt`` event before anything is freed.
3. An ``offload_freed`` event naming the payloads is durable before the first unlink, so a power
   cut in between leaves a payload that the chain already explains as offloaded.
4. Only ``.bin`` payloads are freed, and only when their whole entry (payload, signature,
   manifest) is confirmed at this target; manifests and signatures stay, so the chain still
   verifies on the unit.
5. Immediately before a payload is freed, the target's copy is checked again
   (``confirm_before_free``: re-read and hashed, or the receipt's exact S3 version headed, where
   this round's own HeadObject of that locked version, under a minute old, is the check), never
   trusting a receipt of an earlier round. A copy that fails blocks the free, is reported and
   named in a signed ``offload_mismatch`` event, which withdraws its confirmation: the next
   round sends it again. A directory target that is, contains or lies inside the store is
   refused before the round writes anything.
State is rebuilt from the chain on every round (receipts are events), and files the target
already holds with the same bytes are confirmed without being sent again, so a round can stop
at any point (undock, link loss, power cut) and the next one resumes.
This module must not delete anything but confirmed ``.bin`` payloads, and it never reads the
environment: the target, sink and clock are handed in.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from evidence.format import ORPHANS_DIR, TMP_PREFIX, parse_entry_name
from evidence.records import MAX_MANIFEST_BYTES, read_record
from evidence.sealing import JsonValue
from hal.durable import fsync_dir
from hal.errors import IntegrityError
from hal.protocols import Clock
from offload.bundle import BUNDLE_FILES
from offload.plan import (
    FREED_KIND,
    MISMATCH_KIND,
    RECEIPT_KIND,
    ChainState,
    Confirmed,
    Entry,
    PlannedFile,
    build_plan,
    freeable_payloads,
    parse_entry,
)
from offload.targets import (
    CHUNK_BYTES,
    OffloadError,
    OffloadInterrupted,
    OffloadTarget,
    Receipt,
    hash_file,
)

log = logging.getLogger(__name__)

US_PER_DAY = 86_400 * 1_000_000
RECEIPT_BATCH_FILES = 200
"""Most files named by one ``offload_receipt`` event (keeps each manifest well under 100 kB)."""
EVENT_BATCH_FILES = 1000
"""Most files named by one ``offload_freed`` or ``offload_mismatch`` event: after a long spell
without freeing, one round may free a whole shift, and a manifest over the records' size limit
would be refused by the sealer (nothing freed, every round)."""


class ReceiptSink(Protocol):
    """The part of the unit's evidence sink the offload writes through (``Sealer`` fits)."""

    def event(
        self,
        kind: str,
        fields: Mapping[str, JsonValue],
        *,
        mono_us: int,
        utc_us: int,
        reserve_ok: bool = False,
    ) -> int: ...


@dataclass(frozen=True)
class Retention:
    """How long the target must keep what it receives; recordings with a marker keep longer."""

    retention_days: int = 1095
    marked_retention_days: int = 3650


@dataclass
class OffloadResult:
    target: str
    uploaded_files: int = 0
    uploaded_bytes: int = 0
    found_files: int = 0  # already at the target with the same bytes (an earlier, cut round)
    confirmed_before: int = 0  # named by receipts in the chain before this round
    receipt_events: int = 0
    freed_files: list[str] = field(default_factory=list)
    freed_bytes: int = 0
    # Payloads kept because the target's copy failed the check just before freeing: (file, why).
    mismatched: list[tuple[str, str]] = field(default_factory=list)
    pending_files: int = 0  # left for a later round
    stopped: str = ""  # "" when the round ran to its end, else why it stopped early

    @property
    def complete(self) -> bool:
        return not self.stopped and self.pending_files == 0 and not self.mismatched

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "uploaded_files": self.uploaded_files,
            "uploaded_bytes": self.uploaded_bytes,
            "found_files": self.found_files,
            "confirmed_before": self.confirmed_before,
            "receipt_events": self.receipt_events,
            "freed_files": len(self.freed_files),
            "freed_bytes": self.freed_bytes,
            "pending_files": self.pending_files,
            "mismatched_files": [{"file": f, "reason": why} for f, why in self.mismatched],
            "complete": self.complete,
            "stopped": self.stopped,
        }


@dataclass(frozen=True)
class OffloadProgress:
    """Where a round is: files and bytes of this round's plan done so far (for a progress view).

    Files the target already held count as done, with their bytes; ``bytes_total`` is the size
    of the plan's files when the round started.
    """

    target: str
    files_done: int
    files_total: int
    bytes_done: int
    bytes_total: int


ProgressSink = Callable[[OffloadProgress], None]


@dataclass
class StoreScan:
    """The committed entries of a store and its files outside the chain, as found on disk."""

    entries: list[Entry]
    extra_files: list[str]
    present_payloads: set[str]


def scan_store(store_dir: Path) -> StoreScan:
    """Committed entries (a manifest exists) in chain order; temp files are never offloaded.

    A payload or signature without its manifest is an entry still being written (or a leftover
    the sealer moves to ``orphans/`` at next boot): it is not part of the chain yet.
    """
    entries: list[Entry] = []
    extra: list[str] = []
    payloads: set[str] = set()
    for item in sorted(os.scandir(store_dir), key=lambda e: e.name):
        if not item.is_file() or item.name.startswith(TMP_PREFIX):
            continue
        parsed = parse_entry_name(item.name)
        if parsed is None:
            extra.append(item.name)
            continue
        seq, ext = parsed
        if ext == "bin":
            payloads.add(item.name)
        elif ext == "json":
            try:
                # Size first: a planted huge manifest is never read whole (records' limit).
                if item.stat().st_size > MAX_MANIFEST_BYTES:
                    raise IntegrityError("manifest over the size limit", path=item.path)
                manifest = read_record(Path(item.path).read_bytes(), item.path).to_dict()
            except (OSError, IntegrityError):
                manifest = {}  # still sent as-is: the verifier, not the offload, judges it
            entries.append(parse_entry(seq, manifest))
    orphans = store_dir / ORPHANS_DIR
    if orphans.is_dir():
        extra += sorted(
            f"{ORPHANS_DIR}/{e.name}"
            for e in os.scandir(orphans)
            if e.is_file() and not e.name.startswith(TMP_PREFIX)
        )
    # The device key first: a target copy is checkable as soon as its first entry lands.
    extra.sort(key=lambda n: (n != "device-pub.pem", n))
    committed = {e.manifest for e in entries}
    payloads = {p for p in payloads if f"{p[:-4]}.json" in committed}
    return StoreScan(entries, extra, payloads)


class _UndockAwareReader:
    """A file stream that stops the transfer as soon as ``should_continue`` turns false."""

    def __init__(self, stream: BinaryIO, should_continue: Callable[[], bool]) -> None:
        self._stream = stream
        self._should_continue = should_continue

    def read(self, n: int = -1) -> bytes:
        if not self._should_continue():
            raise OffloadInterrupted("the unit left the dock during a transfer")
        return self._stream.read(CHUNK_BYTES if n is None or n < 0 else min(n, CHUNK_BYTES))

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._stream.seek(offset, whence)

    def tell(self) -> int:
        return self._stream.tell()


class _Lookahead:
    """Sends up to ``width`` files of the plan ahead of the one the round is receipting.

    Bounded concurrency without changing what a receipt means: each file is still sent and
    confirmed (the target's ``confirm`` of its exact version) by ``send`` before the round takes
    its receipt, and the round consumes results strictly in plan order, so receipts, their
    signed events and freeing happen exactly as in a sequential round. Two orders are kept on
    the target: an entry's manifest (its commit point) is sent only after its payload and
    signature are confirmed, and nothing is sent once ``should_continue`` turns false. A file
    sent ahead of a failure is never receipted in this round; the next round finds it on the
    target (``existing``) and confirms it without sending it again.
    """

    def __init__(
        self,
        plan: list[PlannedFile],
        skip: set[int],
        width: int,
        pool: ThreadPoolExecutor,
        send: Callable[[PlannedFile, Mapping[str, int]], Receipt],
        present: Mapping[str, int],
        should_continue: Callable[[], bool],
        now_us: Callable[[], int],
    ) -> None:
        self._plan, self._skip, self._width, self._pool = plan, skip, width, pool
        self._send, self._present, self._should_continue = send, present, should_continue
        self._now_us = now_us
        self._futures: dict[int, Future[Receipt]] = {}
        self._submitted_us: dict[int, int] = {}
        self._stopped = False

    def stop(self) -> None:
        """Submit nothing more (sends already running finish on their own)."""
        self._stopped = True

    def _ready(self, head: int, n: int) -> bool:
        """An entry's manifest waits until the files before it in its entry are confirmed."""
        item = self._plan[n]
        if n == head or not item.name.endswith(".json") or item.entry_seq is None:
            return True
        for i in range(head, n):
            if self._plan[i].entry_seq != item.entry_seq or i in self._skip:
                continue
            future = self._futures.get(i)
            if future is None or not future.done() or future.exception() is not None:
                return False
        return True

    def _fill(self, head: int) -> None:
        for n in range(head, min(len(self._plan), head + self._width)):
            if self._stopped or not self._should_continue():
                return
            if n in self._futures or n in self._skip or not self._ready(head, n):
                continue
            self._submitted_us[n] = self._now_us()
            self._futures[n] = self._pool.submit(self._send, self._plan[n], self._present)

    def result(self, n: int) -> tuple[Receipt, int]:
        """The confirmed receipt of plan item ``n`` and a time (the round's clock) no later
        than its confirmation: when it was handed to a thread. The round asks in plan order."""
        self._fill(n)
        future = self._futures.pop(n, None)
        if future is None:  # only if undocked between two checks: send it in this thread
            started = self._now_us()
            return self._send(self._plan[n], self._present), started
        receipt = future.result()
        started = self._submitted_us.pop(n)
        self._fill(n + 1)
        return receipt, started


class _Round:
    """The mutable state of one round; ``offload`` drives it."""

    def __init__(
        self,
        store_dir: Path,
        target: OffloadTarget,
        sink: ReceiptSink,
        clock: Clock,
        *,
        should_continue: Callable[[], bool],
        retention: Retention,
        progress: ProgressSink | None = None,
    ) -> None:
        self.progress = progress
        self.store_dir = store_dir
        self.target = target
        self.sink = sink
        self.clock = clock
        self.should_continue = should_continue
        self.retention = retention
        self.scan = scan_store(store_dir)
        self.state = ChainState.from_entries(self.scan.entries)
        self.confirmed = self.state.confirmed_at(target.url)
        self.result = OffloadResult(target=target.url, confirmed_before=len(self.confirmed))
        self.batch: list[Receipt] = []
        # When this round's own ``confirm`` of a receipt (name, version) began at the latest:
        # the check before freeing may take it as current if it is fresh (targets decide).
        self.confirmed_us: dict[tuple[str, str], int] = {}
        self.seqs_written: list[int] = []
        self._count_lock = threading.Lock()  # send() runs on the lookahead's threads

    # ------------------------------------------------------------------ one file

    def retain_until_us(self, marked: bool) -> int:
        days = self.retention.marked_retention_days if marked else self.retention.retention_days
        return self.clock.utc_us() + days * US_PER_DAY

    def send(self, item: PlannedFile, present: Mapping[str, int]) -> Receipt:
        """Send (or find) one file and confirm it; raises if the target does not hold it."""
        path = self.store_dir / item.name
        size, sha, md5 = hash_file(path)
        until = self.retain_until_us(item.marked)
        receipt = None
        if present.get(item.name) == size:
            receipt = self.target.existing(item.name, size, sha, md5, until)
            if receipt is not None:
                with self._count_lock:
                    self.result.found_files += 1
        if receipt is None:
            with path.open("rb") as f:
                body = _UndockAwareReader(f, self.should_continue)
                receipt = self.target.put(
                    item.name, body, size, sha, md5_b64=md5, retain_until_utc_us=until
                )
            with self._count_lock:
                self.result.uploaded_files += 1
                self.result.uploaded_bytes += size
        if (receipt.name, receipt.size, receipt.sha256, receipt.md5_b64) != (
            item.name,
            size,
            sha,
            md5,
        ):
            raise IntegrityError(
                "the target's receipt does not describe the file sent", path=str(path)
            )
        self.target.confirm(receipt)
        return receipt

    def send_bundle(self, items: list[PlannedFile], present: Mapping[str, int]) -> int:
        """Send ``items`` (signatures and manifests) as one bundle; returns how many went.

        Each member's receipt must describe the bytes read here; they join the receipt batch.
        """
        members = [(item.name, (self.store_dir / item.name).read_bytes()) for item in items]
        until = self.retain_until_us(any(item.marked for item in items))
        receipts = self.target.put_bundle(members, retain_until_utc_us=until, listed=present)
        if [(r.name, r.size, r.sha256) for r in receipts] != [
            (name, len(body), hashlib.sha256(body).hexdigest()) for name, body in members
        ]:
            raise IntegrityError(
                "the target's receipts do not describe the bundle's files",
                path=str(self.store_dir / items[0].name),
            )
        self.batch.extend(receipts)
        self.result.uploaded_files += len(members)
        self.result.uploaded_bytes += sum(len(body) for _name, body in members)
        if len(self.batch) >= RECEIPT_BATCH_FILES:
            self.flush()
        return len(members)

    # ------------------------------------------------------------------ receipts and freeing

    def flush(self) -> None:
        """Receipt event for the confirmed batch, then free the payloads that became freeable."""
        if self.batch:
            files: list[JsonValue] = []
            for r in self.batch:
                detail = r.to_json()
                for k in ("target", "name", "size", "sha256"):
                    detail.pop(k, None)
                files.append(
                    {"file": r.name, "sha256": r.sha256, "size": r.size, "receipt": detail}
                )
            self.seqs_written.append(
                self.sink.event(
                    RECEIPT_KIND,
                    {"target": self.target.url, "files": files},
                    mono_us=self.clock.monotonic_us(),
                    utc_us=self.clock.utc_us(),
                    reserve_ok=True,
                )
            )
            self.result.receipt_events += 1
            for r in self.batch:
                self.confirmed[r.name] = Confirmed(
                    r.sha256,
                    r.size,
                    md5_b64=r.md5_b64,
                    version_id=r.version_id,
                    etag=r.etag,
                    retain_until_utc_us=r.retain_until_utc_us,
                )
            self.batch = []
        self.free()

    def free(self) -> None:
        present = self.scan.present_payloads
        candidates = freeable_payloads(self.scan.entries, self.confirmed, present)
        good = self.recheck(candidates)
        # Payloads already named by an offload_freed event but still present (a cut between the
        # event and the unlink) need no second event: the chain already explains them.
        leftover = [p for p in good if p in self.state.freed]
        fresh = [p for p in good if p not in self.state.freed]
        for i in range(0, len(fresh), EVENT_BATCH_FILES):
            chunk = fresh[i : i + EVENT_BATCH_FILES]
            self.seqs_written.append(
                self.sink.event(
                    FREED_KIND,
                    {"target": self.target.url, "files": list(chunk)},
                    mono_us=self.clock.monotonic_us(),
                    utc_us=self.clock.utc_us(),
                    reserve_ok=True,
                )
            )
            self.state.freed.update(chunk)
        for name in [*leftover, *fresh]:
            path = self.store_dir / name
            try:
                size = path.stat().st_size
                path.unlink()
            except FileNotFoundError:
                size = 0
            present.discard(name)
            self.result.freed_files.append(name)
            self.result.freed_bytes += size
        if leftover or fresh:
            fsync_dir(self.store_dir)

    def recheck(self, candidates: list[str]) -> list[str]:
        """The payloads whose target copy holds the receipted bytes right now.

        A copy that fails is reported and its confirmation withdrawn by a signed event; a target
        that cannot be reached at this moment frees nothing and withdraws nothing.
        """
        good: list[str] = []
        bad: list[tuple[str, str]] = []
        now_us = self.clock.monotonic_us()
        for name in candidates:
            c = self.confirmed[name]
            since = self.confirmed_us.get((name, c.version_id))
            receipt = Receipt(
                self.target.url,
                name,
                c.size,
                c.sha256,
                c.md5_b64,
                c.retain_until_utc_us,
                version_id=c.version_id,
                etag=c.etag,
            )
            try:
                self.target.confirm_before_free(
                    receipt,
                    self.store_dir / name,
                    confirmed_age_us=None if since is None else now_us - since,
                )
            except IntegrityError as exc:
                log.warning("not freeing %s: %s", name, exc)
                bad.append((name, exc.reason))
                continue
            except OffloadError as exc:
                # Unreachable now: nothing more is freed this round; the next round checks again.
                log.warning("not freeing %s or later payloads: %s", name, exc)
                break
            good.append(name)
        for i in range(0, len(bad), EVENT_BATCH_FILES):
            chunk = bad[i : i + EVENT_BATCH_FILES]
            self.seqs_written.append(
                self.sink.event(
                    MISMATCH_KIND,
                    {
                        "target": self.target.url,
                        "files": [{"file": n, "reason": why} for n, why in chunk],
                    },
                    mono_us=self.clock.monotonic_us(),
                    utc_us=self.clock.utc_us(),
                    reserve_ok=True,
                )
            )
            for name, _why in chunk:
                self.confirmed.pop(name, None)
            self.result.mismatched += chunk
        return good

    # ------------------------------------------------------------------ the round

    def run(self) -> OffloadResult:
        self.target.keep_apart(self.store_dir)
        plan = build_plan(
            self.scan.entries,
            self.scan.extra_files,
            self.state,
            self.target.url,
            self.scan.present_payloads,
        )
        present = self.target_listing()
        remaining = len(plan)
        sizes = [self._size(item.name) for item in plan]
        total_bytes = sum(sizes)
        done_bytes = 0
        self._report(0, len(plan), 0, total_bytes)
        workers = max(1, self.target.parallel_puts)
        try:
            with ThreadPoolExecutor(workers, thread_name_prefix="offload") as pool:
                skip = {
                    n
                    for n, item in enumerate(plan)
                    if item.bookkeeping
                    and present.get(item.name) == (self.store_dir / item.name).stat().st_size
                }
                # Signatures and manifests of entries go in bundles (one object per
                # BUNDLE_FILES) where the target takes them: never through the lookahead, and
                # each only after its entry's payload, earlier in the plan, is confirmed.
                small = {
                    n
                    for n, item in enumerate(plan)
                    if self.target.bundles
                    and n not in skip
                    and not item.bookkeeping
                    and item.entry_seq is not None
                    and not item.name.endswith(".bin")
                    # Already there as an object of its own (the closing entry of a
                    # ``bwc offload`` session, or a round cut before its receipt): found and
                    # confirmed on its own, not sent again in a bundle.
                    and present.get(item.name) != sizes[n]
                }
                pending: list[PlannedFile] = []
                ahead = _Lookahead(
                    plan,
                    skip | small,
                    workers,
                    pool,
                    self.send,
                    present,
                    self.should_continue,
                    self.clock.monotonic_us,
                )
                for n, item in enumerate(plan):
                    if n:
                        done_bytes += sizes[n - 1]
                        self._report(n, len(plan), done_bytes, total_bytes)
                    if not self.should_continue():
                        self.result.stopped = "undocked"
                        ahead.stop()
                        break
                    if n in skip:
                        remaining -= 1  # sent by an earlier round; never receipted (see plan.py)
                        continue
                    if n in small:
                        pending.append(item)
                        if len(pending) >= BUNDLE_FILES:
                            remaining -= self.send_bundle(pending, present)
                            pending = []
                        continue
                    try:
                        receipt, started_us = ahead.result(n)
                    except BaseException:
                        ahead.stop()
                        raise
                    remaining -= 1
                    self.confirmed_us[(receipt.name, receipt.version_id)] = started_us
                    if not item.bookkeeping:
                        self.batch.append(receipt)
                    if len(self.batch) >= RECEIPT_BATCH_FILES:
                        self.flush()
                if pending and not self.result.stopped:
                    remaining -= self.send_bundle(pending, present)
            self.flush()
            if plan and not self.result.stopped:
                self._report(len(plan), len(plan), total_bytes, total_bytes)
        except OffloadInterrupted:
            self.result.stopped = "undocked"
            self.flush()
        except Exception:
            # Link loss, a refused or full target, a failed receipt: keep what was confirmed up
            # to here (receipt, then free), then let the caller see the failure. A power cut
            # runs no code at all; the next round rebuilds from the chain and the target.
            self.flush()
            raise
        finally:
            self.result.pending_files = remaining
        if not self.result.stopped:
            self.send_own_events()
        return self.result

    def _size(self, name: str) -> int:
        try:
            return (self.store_dir / name).stat().st_size
        except OSError:
            return 0  # the round itself reports what it cannot read

    def _report(self, files_done: int, files_total: int, bytes_done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(
                OffloadProgress(self.target.url, files_done, files_total, bytes_done, total)
            )

    def target_listing(self) -> Mapping[str, int]:
        return self.target.listing()

    def send_own_events(self) -> None:
        """Send this round's receipt and freed events too, so the target holds the whole chain.

        They are confirmed but not receipted (see ``plan.BOOKKEEPING_KINDS``); a later round
        skips them once the target lists them with the right size. Every signature goes first,
        side by side, then every manifest: an entry's manifest (its commit point) still reaches
        the target only after its signature is confirmed.
        """
        if not self.seqs_written:
            return
        workers = max(1, min(self.target.parallel_puts, len(self.seqs_written)))
        with ThreadPoolExecutor(workers, thread_name_prefix="offload") as pool:
            for ext in ("sig", "json"):
                if not self.should_continue():
                    self.result.stopped = "undocked"
                    return
                items = [
                    PlannedFile(f"{seq:010d}.{ext}", "events", False, True, seq)
                    for seq in self.seqs_written
                ]
                futures = [pool.submit(self.send, item, {}) for item in items]
                interrupted = False
                for future in futures:
                    try:
                        future.result()
                    except OffloadInterrupted:
                        interrupted = True
                if interrupted:
                    self.result.stopped = "undocked"
                    return


def send_closing_entry(
    store_dir: Path, target: OffloadTarget, clock: Clock, seq: int, *, retention: Retention
) -> None:
    """Send the entry that closed an offload session (its ``shutdown``), confirmed, unreceipted.

    Written after the round, it would otherwise stay on the unit until the next round: sent
    now, the target holds the whole chain up to the unit's head. The next round finds it at the
    target and receipts it without sending it again.
    """
    until = clock.utc_us() + retention.retention_days * US_PER_DAY
    for ext in ("sig", "json"):
        name = f"{seq:010d}.{ext}"
        path = store_dir / name
        size, sha, md5 = hash_file(path)
        with path.open("rb") as f:
            receipt = target.put(name, f, size, sha, md5_b64=md5, retain_until_utc_us=until)
        target.confirm(receipt)


def offload(
    store_dir: Path,
    target: OffloadTarget,
    evidence_sink: ReceiptSink,
    clock: Clock,
    should_continue: Callable[[], bool],
    *,
    retention: Retention | None = None,
    progress: ProgressSink | None = None,
) -> OffloadResult:
    """Run one offload round of ``store_dir`` to ``target``; see the module docstring.

    Returns normally when everything was sent or the unit was undocked (``result.stopped``);
    raises the target's error (``OffloadError``, ``IntegrityError``, ``StorageFullError``)
    after recording the receipts of what was confirmed before it. ``progress``, if given, is
    called before the first file, after each file and at the end of a complete round.
    """
    return _Round(
        store_dir,
        target,
        evidence_sink,
        clock,
        should_continue=should_continue,
        retention=retention or Retention(),
        progress=progress,
    ).run()
