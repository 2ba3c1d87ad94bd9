"""State shared by the verifier's parts while one store is checked: the store, the report being
built, the recordings found so far, and the one way to record a finding.

Nothing here judges evidence; the parts (``verify_chain``, ``verify_events``, ``verify_payloads``)
do. Reads go through ``read`` so that every failure to read is a finding, never an exception.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.x509 import Certificate

from evidence.findings import Code, Finding
from evidence.records import Manifest
from evidence.store import StoreReader
from evidence.verify_report import RecordingReport, Report
from hal.errors import IntegrityError
from hal.software_key import fingerprint_raw


@dataclass(frozen=True)
class Policy:
    """What counts as intact. Strict by default: each weaker claim is an explicit choice."""

    trusted_keys: tuple[bytes, ...] = ()
    """Raw Ed25519 device public keys (``--trust``); origin is established only against these."""
    unpinned: bool = False
    """``--unpinned``: accept the store's own device-pub.pem; say origin was not checked."""
    allow_freed: bool = False
    """``--allow-freed``: a payload freed after a signed offload is no finding."""
    tsa_roots: tuple[Certificate, ...] = ()


@dataclass
class Entry:
    """One chain entry whose manifest decoded, verified and sits in its place."""

    seq: int
    manifest: Manifest
    name: str


@dataclass
class Context:
    store: StoreReader
    policy: Policy
    report: Report
    recs: dict[str, RecordingReport] = field(default_factory=dict)
    keys: dict[str, Ed25519PublicKey] = field(default_factory=dict)
    trusted: set[str] = field(default_factory=set)

    @classmethod
    def start(cls, store: StoreReader, policy: Policy) -> Context:
        ctx = cls(store, policy, Report(store=store.describe("")))
        for raw in policy.trusted_keys:
            fp = fingerprint_raw(raw)
            ctx.trusted.add(fp)
            ctx.keys[fp] = Ed25519PublicKey.from_public_bytes(raw)
        return ctx

    def path(self, name: str) -> str:
        return self.store.describe(name)

    def finding(
        self, exc: IntegrityError, recording: str | None = None, code: Code | None = None
    ) -> None:
        """Record ``exc`` against ``recording`` if it is a known one, else against the store."""
        f = Finding(
            exc.path or self.store.describe(""),
            exc.reason,
            recording,
            str(exc.code or code or Code.MANIFEST_INVALID),
        )
        rec = self.recs.get(recording) if recording is not None else None
        (rec.findings if rec is not None else self.report.findings).append(f)

    def read(self, name: str, limit: int) -> bytes:
        """The bytes of ``name`` if it is a regular file of at most ``limit`` bytes.

        ``OSError`` if it cannot be read; ``IntegrityError`` (manifest-too-large) if it is bigger:
        the size is asked first, so an oversize file is never read into memory.
        """
        try:
            size = self.store.size(name)
        except IntegrityError as exc:
            raise OSError(str(exc)) from exc
        if size > limit:
            raise IntegrityError(
                f"{size} bytes, over the {limit}-byte limit for this kind of file",
                path=self.path(name),
                code=Code.MANIFEST_TOO_LARGE,
            )
        try:
            data = self.store.read(name)
        except IntegrityError as exc:  # an object store's read failure
            raise OSError(exc.reason) from exc
        if len(data) > limit:  # changed between the two calls
            raise IntegrityError(
                "grew while being read", path=self.path(name), code=Code.MANIFEST_TOO_LARGE
            )
        return data


def recordings_of(entries: Sequence[Entry]) -> set[str]:
    return {e.manifest["recording"] for e in entries if e.manifest.type == "unit"}
