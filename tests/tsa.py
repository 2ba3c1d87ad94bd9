"""A local RFC 3161 time-stamping authority for tests: an openssl CA, a TSA certificate and
`openssl ts -reply` behind a tiny HTTP handler on 127.0.0.1.

Test-only. It must not be imported by product code. The TSA configuration leaves out the
``certs =`` line on purpose: rfc3161-client then verifies its tokens (the token carries the TSA
certificate only, ``ess_cert_id_chain = no``). Knobs for failure tests: ``mode`` may be set to
``"ok"``, ``"error"`` (HTTP 500), ``"garbage"`` (200 with bytes that are not a TimeStampResp) or
``"other-imprint"`` (a valid token over some other message).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

TS_REQUEST = "application/timestamp-query"
TS_REPLY = "application/timestamp-reply"


def openssl_ts_available() -> str | None:
    """None if ``openssl ts`` can run here, else the reason to skip."""
    exe = shutil.which("openssl")
    if exe is None:
        return "openssl is not installed"
    proc = subprocess.run([exe, "ts", "-help"], capture_output=True, text=True, check=False)
    if "Usage" not in proc.stderr + proc.stdout and "usage" not in proc.stderr + proc.stdout:
        return f"this openssl has no `ts` command: {proc.stderr.strip()[:200]}"
    return None


_CONF = """\
[ req ]
distinguished_name = dn
prompt = no
[ dn ]
CN = placeholder

[ v3_ca ]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash

[ v3_tsa ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,nonRepudiation
extendedKeyUsage = critical,timeStamping
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid

[ tsa ]
default_tsa = tsa_config

[ tsa_config ]
dir = {dir}
serial = $dir/tsaserial
crypto_device = builtin
signer_cert = $dir/tsa-cert.pem
signer_key = $dir/tsa-key.pem
signer_digest = sha256
default_policy = 1.3.6.1.4.1.99999.1.1
other_policies = 1.3.6.1.4.1.99999.1.2
digests = sha256, sha384, sha512
accuracy = secs:1
ordering = no
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = sha256
"""


def _openssl(*args: str | Path, stdin: bytes | None = None) -> bytes:
    proc = subprocess.run(
        ["openssl", *map(str, args)], input=stdin, capture_output=True, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(map(str, args))}: {proc.stderr.decode()[-500:]}")
    return proc.stdout


def make_tsa_pki(directory: Path, name: str = "Test TSA") -> Path:
    """Create CA + TSA key/cert and the ts config in ``directory``; returns the config path."""
    directory.mkdir(parents=True, exist_ok=True)
    conf = directory / "tsa.cnf"
    conf.write_text(_CONF.format(dir=directory))
    (directory / "tsaserial").write_text("01\n")
    ca_key, ca_cert = directory / "ca-key.pem", directory / "ca-cert.pem"
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", ca_key)
    _openssl(
        "req", "-new", "-x509", "-config", conf, "-extensions", "v3_ca", "-key", ca_key,
        "-subj", f"/CN={name} Root CA", "-days", "3650", "-out", ca_cert,
    )  # fmt: skip
    tsa_key, tsa_csr = directory / "tsa-key.pem", directory / "tsa.csr"
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", tsa_key)
    _openssl(
        "req", "-new", "-config", conf, "-key", tsa_key, "-subj", f"/CN={name}", "-out", tsa_csr
    )
    _openssl(
        "x509", "-req", "-in", tsa_csr, "-CA", ca_cert, "-CAkey", ca_key, "-CAcreateserial",
        "-extfile", conf, "-extensions", "v3_tsa", "-days", "3650",
        "-out", directory / "tsa-cert.pem",
    )  # fmt: skip
    return conf


@dataclass
class LocalTsa:
    """A running test TSA. ``url`` is where to POST; ``ca_cert`` is the root to trust."""

    directory: Path
    conf: Path
    server: ThreadingHTTPServer
    thread: threading.Thread
    mode: str = "ok"
    requests: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}/"

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca-cert.pem"

    def reply(self, query: bytes) -> bytes:
        """``openssl ts -reply`` over one DER TimeStampReq; returns the DER TimeStampResp."""
        with self.lock:  # openssl increments the serial file: one signer at a time.
            self.requests += 1
            if self.mode == "other-imprint":
                digest = hashlib.sha256(b"some other chain head").hexdigest()
                query = _openssl("ts", "-query", "-digest", digest, "-sha256", "-no_nonce")
            qfile = self.directory / "query.tsq"
            qfile.write_bytes(query)
            return _openssl(
                "ts", "-reply", "-config", self.conf, "-queryfile", qfile,
                "-inkey", self.directory / "tsa-key.pem",
                "-signer", self.directory / "tsa-cert.pem",
            )  # fmt: skip

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


def start_tsa(directory: Path, name: str = "Test TSA") -> LocalTsa:
    """Create the PKI in ``directory`` and serve it on an ephemeral 127.0.0.1 port."""
    conf = make_tsa_pki(directory, name)
    holder: list[LocalTsa] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            tsa = holder[0]
            length = int(self.headers.get("Content-Length", "0"))
            query = self.rfile.read(length)
            if tsa.mode == "error" or self.headers.get("Content-Type") != TS_REQUEST:
                self.send_error(500, "test TSA told to fail")
                return
            body = b"not a timestamp reply" if tsa.mode == "garbage" else tsa.reply(query)
            self.send_response(200)
            self.send_header("Content-Type", TS_REPLY)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # Quiet: pytest shows failures, not every request.

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, name="test-tsa", daemon=True)
    tsa = LocalTsa(directory, conf, server, thread)
    holder.append(tsa)
    thread.start()
    return tsa
