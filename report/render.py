"""Writes the report: verify and open the store, then one self-contained HTML file per recording.

The page loads nothing: CSS is inline, pictures are ``data:`` URIs, drawings are inline SVG, and a
Content-Security-Policy forbids any fetch, so it reads the same offline, years later. Jinja2 is
imported only here, so nothing on the unit's start-up path pays for it.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from pathlib import Path

from evidence.export import export_metadata
from evidence.format import TMP_PREFIX
from evidence.keys import AgencyPrivateKey
from evidence.opener import Recording, open_store
from evidence.store import StoreReader
from hal.errors import UsageError
from report.chain import recording_events
from report.clock_text import clock_offset_text, iso_text
from report.model import facts_of
from report.page import Page, build_page
from report.thumbnails import render_thumbnails, wanted_frames

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).parent / "templates"
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


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
    store: StoreReader,
    generated_utc_us: int,
    tool_version: str,
    interval_s: float | None = None,
) -> Page:
    """The page of one opened recording, thumbnails decoded from its sealed video."""
    meta = export_metadata(rec, {})
    events = recording_events(store, rec.report.id, rec.units, rec.store_report.head_seq)
    facts = facts_of(rec, meta, events)
    segments = {s.index: s for s in rec.segments}
    thumbs = render_thumbnails(
        facts, wanted_frames(facts, interval_s), lambda i: segments[i].iter_plaintext()
    )
    note = None if rec.segments else "No video was sealed for this recording (see how it ended)."
    return build_page(facts, thumbs, generated_utc_us, tool_version, note)


def write_reports(
    store: StoreReader,
    key: AgencyPrivateKey,
    out_dir: Path,
    utc_us: Callable[[], int],
    tool_version: str,
    trusted_keys: list[bytes] | None = None,
    interval_s: float | None = None,
) -> list[Path]:
    """Write ``out_dir/<recording-id>.html`` for every recording; returns the paths written.

    Refuses (``IntegrityError``, from the opener) before writing anything if verification finds
    anything. Never overwrites: an existing report is a usage error naming the file.
    """
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--out {out_dir}: cannot create: {exc.strerror}") from exc
    written: list[Path] = []
    for rec in open_store(store, key, trusted_keys):
        page = report_page(rec, store, utc_us(), tool_version, interval_s)
        path = out_dir / f"{_file_id(rec.report.id)}.html"
        _write_new(path, render_html(page))
        log.info("report for recording %s: %d thumbnails", rec.report.id, len(page.thumbnails))
        written.append(path)
    return written


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
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)  # fails if the report exists: never overwrite
        except FileExistsError as exc:
            raise UsageError(f"--out {path}: exists; reports are never overwritten") from exc
    finally:
        tmp.unlink(missing_ok=True)
