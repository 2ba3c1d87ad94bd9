"""RFC 3161 time anchoring of the evidence chain head: request a token at the dock, check it in
the verifier.

The message a token stamps is the head entry's manifest **file bytes**, hashed with SHA-256, so
the token's message imprint equals the entry's hash (the next entry's ``prev``). The token is sealed
as a ``timestamp_token`` event after the head it anchors. A TSA that is down or answers nonsense
never stops anything: the unit logs a warning and seals one ``timestamp_failed`` event per dock
session. This module must not read the environment or the wall clock (time and the HTTP poster
are handed in), and must never raise out of ``anchor_head`` for a TSA problem.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Any, Protocol

from cryptography import x509
from rfc3161_client import (
    HashAlgorithm,
    PKIStatus,
    TimestampRequestBuilder,
    TimeStampResponse,
    VerificationError,
    VerifierBuilder,
    decode_timestamp_response,
)

from evidence.format import entry_name
from evidence.records import EventKind
from evidence.sealing import JsonValue
from hal.errors import BwcError, IntegrityError, UsageError
from hal.protocols import Clock

log = logging.getLogger(__name__)

TOKEN_KIND: str = EventKind.TIMESTAMP_TOKEN.value
FAILED_KIND: str = EventKind.TIMESTAMP_FAILED.value
HASH_ALG = "sha256"
SHA256_OID = x509.ObjectIdentifier("2.16.840.1.101.3.4.2.1")
SHA512_OID = x509.ObjectIdentifier("2.16.840.1.101.3.4.2.3")
_HASHES: dict[str, tuple[x509.ObjectIdentifier, Callable[[bytes], Any]]] = {
    "sha256": (SHA256_OID, hashlib.sha256),
    "sha512": (SHA512_OID, hashlib.sha512),
}
TIMEOUT_S = 10.0
"""One TSA round trip; a dock's link is local, and a slow TSA only delays the offload round."""
MAX_REPLY_BYTES = 64 * 1024
"""A TimeStampResp with a certificate is ~1-4 kB; anything far bigger is not one."""
QUERY_TYPE = "application/timestamp-query"
REPLY_TYPE = "application/timestamp-reply"

Poster = Callable[[str, bytes, float], bytes]
"""``post(url, der_request, timeout_s) -> der_reply``; raises ``TimestampError``."""


class TimestampError(BwcError):
    """The TSA could not be reached or gave no usable token. Never fatal to recording."""


class AnchorSink(Protocol):
    """The part of the unit's evidence sink anchoring needs (``Sealer`` fits)."""

    @property
    def store(self) -> Path: ...

    @property
    def head_seq(self) -> int: ...

    @property
    def head_hash(self) -> str: ...

    def event(
        self,
        kind: str,
        fields: Mapping[str, JsonValue],
        *,
        mono_us: int,
        utc_us: int,
        reserve_ok: bool = False,
    ) -> int: ...


# ---------------------------------------------------------------------- requesting


def http_post(url: str, body: bytes, timeout_s: float) -> bytes:
    """POST an RFC 3161 query over HTTP(S) (RFC 3161 §3.4) and return the reply body."""
    if not url.startswith(("http://", "https://")):
        raise TimestampError(f"offload.tsa_url {url!r}: only http:// and https:// are supported")
    # The scheme was checked above: no file:// or custom openers reach urlopen.
    req = urllib.request.Request(  # noqa: S310
        url, data=body, method="POST", headers={"Content-Type": QUERY_TYPE}
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:  # noqa: S310
            ctype = resp.headers.get("Content-Type", "")
            data: bytes = resp.read(MAX_REPLY_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise TimestampError(f"TSA {url} answered HTTP {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        raise TimestampError(f"TSA {url} unreachable: {exc.reason}") from exc
    except (TimeoutError, OSError) as exc:
        raise TimestampError(f"TSA {url} failed: {exc}") from exc
    if len(data) > MAX_REPLY_BYTES:
        raise TimestampError(f"TSA {url} reply is larger than {MAX_REPLY_BYTES} bytes")
    if ctype.split(";")[0].strip() != REPLY_TYPE:
        raise TimestampError(f"TSA {url} answered Content-Type {ctype!r}, not {REPLY_TYPE}")
    return data


@dataclass(frozen=True)
class Token:
    """A granted token over one message, checked against the request that asked for it."""

    response_der: bytes
    gen_time: str  # ISO 8601 UTC, from the token
    serial: int
    nonce: int


def request_token(
    url: str, message: bytes, *, post: Poster = http_post, timeout_s: float = TIMEOUT_S
) -> Token:
    """Ask the TSA at ``url`` to stamp SHA-256(``message``) with a fresh nonce.

    Raises ``TimestampError`` if the reply is not a granted token over exactly this imprint
    and nonce. The TSA's signature is not checked here (the unit need not know the TSA's CA);
    the verifier checks it against ``--tsa-ca``.
    """
    req = TimestampRequestBuilder().data(message).hash_algorithm(HashAlgorithm.SHA256).build()
    der = post(url, req.as_bytes(), timeout_s)
    try:
        resp = decode_timestamp_response(der)
        status = resp.status
        if status not in (PKIStatus.GRANTED, PKIStatus.GRANTED_WITH_MODS):
            raise TimestampError(f"TSA {url} refused: status {status} {resp.status_string}")
        parsed = _parse(resp)
    except ValueError as exc:  # the token is parsed lazily: any field may be malformed
        raise TimestampError(f"TSA {url} reply is not a TimeStampResp: {exc}") from exc
    digest = hashlib.sha256(message).digest()
    if parsed.imprint_alg != SHA256_OID or parsed.imprint != digest:
        raise TimestampError(f"TSA {url} stamped another message imprint than the one asked for")
    if req.nonce is not None and parsed.nonce != req.nonce:
        raise TimestampError(f"TSA {url} reply carries another nonce (replayed reply?)")
    return Token(der, parsed.gen_time, parsed.serial, parsed.nonce)


@dataclass(frozen=True)
class _Parsed:
    imprint_alg: x509.ObjectIdentifier
    imprint: bytes
    gen_time: str
    gen_time_s: float
    serial: int
    nonce: int
    tsa_name: str | None


def _parse(resp: TimeStampResponse) -> _Parsed:
    """Every TSTInfo field we use, read at once; raises ValueError for a malformed token."""
    info = resp.tst_info
    t = info.gen_time
    t = (t if t.tzinfo is not None else t.replace(tzinfo=UTC)).astimezone(UTC)
    try:
        name: str | None = str(info.name.value)
    except (ValueError, KeyError, AttributeError):  # absent, or an unusual GeneralName form
        name = None
    resp.time_stamp_token()  # the signed CMS, parsed here so the verifier sees a clean error
    return _Parsed(
        imprint_alg=info.message_imprint.hash_algorithm,
        imprint=info.message_imprint.message,
        gen_time=t.isoformat().replace("+00:00", "Z"),
        gen_time_s=t.timestamp(),
        serial=info.serial_number,
        nonce=info.nonce,
        tsa_name=name,
    )


@dataclass(frozen=True)
class AnchorOutcome:
    """What one anchoring attempt did: ``seq`` of the sealed event, or the failure reason."""

    anchored: bool
    head_seq: int
    seq: int | None = None
    gen_time: str | None = None
    error: str | None = None


def anchor_head(
    sink: AnchorSink,
    tsa_url: str,
    clock: Clock,
    *,
    post: Poster = http_post,
    timeout_s: float = TIMEOUT_S,
    record_failure: bool = True,
) -> AnchorOutcome:
    """Timestamp the chain head of ``sink`` and seal the token as a ``timestamp_token`` event.

    On any TSA failure: a warning, and (if ``record_failure``) a signed ``timestamp_failed``
    event; never raises for it. An empty chain has nothing to anchor.
    """
    head_seq, head_hash = sink.head_seq, sink.head_hash
    if head_seq < 0:
        return AnchorOutcome(False, head_seq, error="empty chain: nothing to anchor")
    try:
        message = (sink.store / entry_name(head_seq, "json")).read_bytes()
        if hashlib.sha256(message).hexdigest() != head_hash:
            # The sealer's own head changed under us, or the file was altered: do not stamp it.
            raise TimestampError(f"head manifest {head_seq} no longer hashes to the head hash")
        token = request_token(tsa_url, message, post=post, timeout_s=timeout_s)
    except (TimestampError, OSError) as exc:
        log.warning("time anchor of head %s via %s failed: %s", head_seq, tsa_url, exc)
        if record_failure:
            _seal_quietly(
                sink,
                FAILED_KIND,
                {
                    "head_seq": head_seq,
                    "head_hash": head_hash,
                    "tsa_url": tsa_url,
                    "reason": str(exc),
                },
                clock,
            )
        return AnchorOutcome(False, head_seq, error=str(exc))
    fields: dict[str, JsonValue] = {
        "head_seq": head_seq,
        "head_hash": head_hash,
        "hash_alg": HASH_ALG,
        "token_b64": base64.b64encode(token.response_der).decode("ascii"),
        "tsa_url": tsa_url,
        "gen_time": token.gen_time,
        "serial": str(token.serial),
        "nonce": str(token.nonce),
    }
    seq = _seal_quietly(sink, TOKEN_KIND, fields, clock)
    if seq is None:
        return AnchorOutcome(False, head_seq, error="token could not be sealed")
    log.info("chain head %s anchored at %s (entry %s)", head_seq, token.gen_time, seq)
    return AnchorOutcome(True, head_seq, seq, token.gen_time)


def _seal_quietly(
    sink: AnchorSink, kind: str, fields: Mapping[str, JsonValue], clock: Clock
) -> int | None:
    # An anchor is worth having but not worth a recording: a full store or a sealing error is
    # logged and the caller carries on.
    try:
        return sink.event(kind, fields, mono_us=clock.monotonic_us(), utc_us=clock.utc_us())
    except BwcError as exc:
        log.warning("could not seal %s event: %s", kind, exc)
        return None


class DockAnchor:
    """One dock session's anchoring: stamp the head at the first offload round; after a failure,
    retry at each later round, sealing ``timestamp_failed`` only for the first failure.

    Not thread-safe: call from the thread that runs the offload rounds.
    """

    def __init__(self, tsa_url: str, *, post: Poster = http_post) -> None:
        self.tsa_url = tsa_url
        self._post = post
        self._failures = 0
        self.outcome: AnchorOutcome | None = None

    def before_round(self, sink: AnchorSink, clock: Clock) -> AnchorOutcome | None:
        """Anchor now unless this session already has an anchor; None if it had one."""
        if self.outcome is not None and self.outcome.anchored:
            return None
        self.outcome = anchor_head(
            sink, self.tsa_url, clock, post=self._post, record_failure=self._failures == 0
        )
        if not self.outcome.anchored:
            self._failures += 1
        return self.outcome


# ---------------------------------------------------------------------- verifying


def load_tsa_roots(path: Path) -> list[x509.Certificate]:
    """Every PEM certificate in ``path`` (the TSA's root CA, optionally intermediates)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"--tsa-ca {path}: cannot read: {exc.strerror}") from exc
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise UsageError(f"--tsa-ca {path}: not a PEM certificate file") from exc
    return certs


@dataclass
class Anchor:
    """One ``timestamp_token`` event as the verifier judged it."""

    seq: int
    head_seq: int | None
    head_hash: str | None
    gen_time: str | None
    tsa_url: str | None
    status: str  # "verified" | "unverified" (no --tsa-ca) | "invalid"
    tsa_name: str | None = None
    device_utc_minus_tsa_s: float | None = None


ManifestBytes = Callable[[int], bytes | None]
"""Entry ``seq``'s manifest file bytes, or None if the chain has no readable entry there."""


def check_anchor(
    seq: int,
    fields: Mapping[str, Any],
    utc_us: int,
    manifest_bytes: ManifestBytes,
    roots: Sequence[x509.Certificate] | None,
    path: str,
) -> Anchor:
    """Judge one ``timestamp_token`` event sealed as entry ``seq``; raises ``IntegrityError``.

    The token must decode, be granted, stamp the hash of entry ``head_seq``'s manifest file, and
    that hash must be the event's ``head_hash``. With ``roots``, the token's CMS signature and the
    TSA certificate (critical timeStamping EKU) must chain to them at the token's time.
    """
    head_seq, head_hash = fields.get("head_seq"), fields.get("head_hash")
    alg, token_b64 = fields.get("hash_alg"), fields.get("token_b64")
    if (
        not isinstance(head_seq, int)
        or isinstance(head_seq, bool)
        or not isinstance(head_hash, str)
    ):
        raise IntegrityError("timestamp_token without head_seq/head_hash", path=path)
    if not isinstance(alg, str) or alg not in _HASHES:
        raise IntegrityError(f"timestamp_token hash_alg {alg!r} is not sha256/sha512", path=path)
    if not 0 <= head_seq < seq:
        raise IntegrityError(
            f"timestamp_token anchors seq {head_seq}, which is not before its own seq {seq}",
            path=path,
        )
    if not isinstance(token_b64, str):
        raise IntegrityError("timestamp_token without token_b64", path=path)
    try:
        resp = decode_timestamp_response(base64.b64decode(token_b64, validate=True))
        pki_status = resp.status
        parsed = _parse(resp)
    except ValueError as exc:  # also binascii.Error; the token is parsed lazily
        raise IntegrityError(f"timestamp token does not decode: {exc}", path=path) from exc
    if pki_status not in (PKIStatus.GRANTED, PKIStatus.GRANTED_WITH_MODS):
        raise IntegrityError(f"timestamp token status {pki_status} is not granted", path=path)
    data = manifest_bytes(head_seq)
    if data is None:
        raise IntegrityError(
            f"timestamp token anchors entry {head_seq}, which the chain does not hold "
            "(removed or unreadable)",
            path=path,
        )
    oid, hash_fn = _HASHES[alg]
    entry_sha256 = hashlib.sha256(data).hexdigest()
    if entry_sha256 != head_hash:
        raise IntegrityError(
            f"timestamp_token names head_hash {head_hash[:16]}… but entry {head_seq}'s manifest "
            f"hashes to {entry_sha256[:16]}… (a token over another head)",
            path=path,
        )
    digest = hash_fn(data).digest()
    if parsed.imprint_alg != oid or parsed.imprint != digest:
        raise IntegrityError(
            f"timestamp token's message imprint is not the {alg} of entry {head_seq}'s manifest "
            "(a token over another head)",
            path=path,
        )
    gen_time = parsed.gen_time
    if fields.get("gen_time") not in (None, gen_time):
        raise IntegrityError(
            f"timestamp_token gen_time {fields.get('gen_time')!r} disagrees with the token's "
            f"{gen_time}",
            path=path,
        )
    status = "unverified"
    if roots:
        builder = VerifierBuilder()
        for cert in roots:
            builder = builder.add_root_certificate(cert)
        try:
            builder.build().verify(resp, digest)
        except (VerificationError, ValueError) as exc:  # ValueError: a malformed embedded cert
            raise IntegrityError(
                f"timestamp token does not verify against --tsa-ca: {exc}", path=path
            ) from exc
        status = "verified"
    url = fields.get("tsa_url")
    return Anchor(
        seq=seq,
        head_seq=head_seq,
        head_hash=head_hash,
        gen_time=gen_time,
        tsa_url=url if isinstance(url, str) else None,
        status=status,
        tsa_name=parsed.tsa_name,
        device_utc_minus_tsa_s=round(utc_us / 1e6 - parsed.gen_time_s, 3),
    )
