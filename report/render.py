"""Writes the report: verify and open the store, then one self-contained HTML file per recording
(for a store that does not verify, pages that lead with its findings and decrypt nothing).

The page loads nothing: CSS is inline, pictures are ``data:`` URIs, drawings are inline SVG, and a
Content-Security-Policy forbids any fetch, so it reads the same offline, years later. Jinja2 is
imported only here, so nothing on the unit's start-up path pays for it.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from evidence.export import export_metadata
from evidence.format import TMP_PREFIX
from evidence.keys import AgencyPrivateKey
from evidence.opener import Recording, open_store
from evidence.store import StoreReader
from evidence.verify import verify_store
from hal.errors import IntegrityError, UsageError
from report.chain import EventEntries, recording_events
from report.clock_text import clock_offset_text, iso_text
from report.model import facts_of
from report.page import Page, build_page
from report.thumbnails import render_thumbnails, wanted_frames

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).parent / "templates"
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")


def render_html(page: Page) -> str:
    """The page as one HTML document (autoescaped: every signed string is data, not markup)."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(clock_offset=clock_offset_text, iso_text=iso_text)
    return env.get_template("recording.html.j2").render(page=page, f=page.facts)


def report_page(
    rec: Recording,
    store: StoreReader | EventEntries,
    generated_utc_us: int,
    tool_version: str,
    interval_s: float | None = None,
) -> Page:
    """The page of one opened recording, thumbnails decoded from its sealed video."""
    meta = export_metadata(rec, {})
    events = recording_events(
        store,
        rec.report.id,
        rec.units,
        rec.store_report.head_seq,
        rec.boot.first_seq if rec.boot else None,
    )
    facts = facts_of(rec, meta, events)
    segments = {s.index: s for s in rec.segments}
    thumbs = render_thumbnails(
        facts, wanted_frames(facts, interval_s), lambda i: segments[i].iter_plaintext()
    )
    note = None if rec.segments else "No video was sealed for this recording (see how it ended)."
    return build_page(facts, thumbs, generated_utc_us, tool_version, note)


@dataclass
class Written:
    """What ``write_reports`` wrote, and whether the store verified."""

    paths: list[Path] = field(default_factory=list)
    intact: bool = True
    problem: str | None = None  # the first finding, with a count of the others


def write_reports(
    store: StoreReader,
    key: AgencyPrivateKey,
    out_dir: Path,
    utc_us: Callable[[], int],
    tool_version: str,
    trusted_keys: list[bytes] | None = None,
    interval_s: float | None = None,
    *,
    unpinned: bool = False,
) -> Written:
    """Write ``out_dir/<recording-id>.html`` for every recording.

    A verified store gets full pages. A store with findings is not decrypted (the opener refuses
    it): each recording still gets a page that leads with every finding and shows what the signed
    entries say, marked NOT intact, without pictures; ``Written.intact`` is then False.
    Strict like ``bwc verify``: without ``trusted_keys`` origin is not established (a finding)
    unless ``unpinned``. Never overwrites: an existing report is a usage error naming the file.
    """
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--out {out_dir}: cannot create: {exc.strerror}") from exc
    done = Written()
    recordings = open_store(store, key, trusted_keys, unpinned=unpinned)
    entries = EventEntries(store)
    try:
        first = next(recordings, None)
    except IntegrityError as exc:
        return _write_findings(
            store, out_dir, utc_us, tool_version, trusted_keys, unpinned, str(exc)
        )
    if first is None:
        return done
    for rec in itertools.chain([first], recordings):
        page = report_page(rec, entries, utc_us(), tool_version, interval_s)
        done.paths.append(_write_page(out_dir, rec.report.id, page))
        log.info("report for recording %s: %d thumbnails", rec.report.id, len(page.thumbnails))
    return done


def _write_findings(
    store: StoreReader,
    out_dir: Path,
    utc_us: Callable[[], int],
    tool_version: str,
    trusted_keys: list[bytes] | None,
    unpinned: bool,
    problem: str,
) -> Written:
    """Pages for a store that did not verify: its findings first, nothing decrypted."""
    report = verify_store(store, trusted_keys, unpinned=unpinned)
    boots = {b.id: b for b in report.boots}
    done = Written(intact=False, problem=problem)
    for rr in report.recordings:
        rec = Recording(
            report=rr,
            boot=boots.get(rr.boot) if rr.boot else None,
            store_report=report,
            device=report.device,
        )
        facts = facts_of(rec, export_metadata(rec, {}))
        note = (
            "This store did NOT verify (see the findings below), so nothing was decrypted: "
            "no pictures and no timeline of the video. The facts shown are what its signed "
            "entries claim and are not established."
        )
        page = build_page(facts, [], utc_us(), tool_version, note, decrypted=False)
        done.paths.append(_write_page(out_dir, rr.id, page))
    return done


def _write_page(out_dir: Path, recording_id: str, page: Page) -> Path:
    path = out_dir / f"{_file_id(recording_id)}.html"
    _write_new(path, render_html(page))
    return path


def _file_id(rid: str) -> str:
    """The signed recording id as a file name that cannot leave DIR."""
    if _SAFE_ID.match(rid):
        return rid
    return re.sub(r"[^A-Za-z0-9._-]", "_", rid).lstrip(".")[:128] or "recording"


def _write_new(path: Path, text: str) -> None:
    """Write ``path`` whole or not at all, and never over an existing file or through a link."""
    tmp = path.with_name(f"{TMP_PREFIX}{path.name}")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(tmp, flags, 0o644)
    except FileExistsError as exc:
        raise UsageError(f"--out {tmp}: a leftover temp file is in the way; remove it") from exc
    except OSError as exc:
        raise UsageError(f"--out {tmp}: cannot write: {exc.strerror}") from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)  # fails if the report exists: never overwrite
        except FileExistsError as exc:
            raise UsageError(f"--out {path}: exists; reports are never overwritten") from exc
        except OSError:
            # No hard links here (an exFAT or SMB share): write the name itself, still exclusive.
            _write_exclusive(path, text, flags)
    finally:
        tmp.unlink(missing_ok=True)


def _write_exclusive(path: Path, text: str, flags: int) -> None:
    try:
        fd = os.open(path, flags, 0o644)
    except FileExistsError as exc:
        raise UsageError(f"--out {path}: exists; reports are never overwritten") from exc
    except OSError as exc:
        raise UsageError(f"--out {path}: cannot write: {exc.strerror}") from exc
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
