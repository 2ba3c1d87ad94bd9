"""The project's one error tree. Every layer raises these; the CLI maps them to exit codes.

Exit codes (CONTRACT §2): ``UsageError``/``ConfigError`` -> 2, ``IntegrityError`` -> 1,
any other ``BwcError`` -> 1.
"""

from __future__ import annotations


class BwcError(Exception):
    """Base of every error this project raises on purpose."""


class UsageError(BwcError, ValueError):
    """Bad input from a person: a wrong option, a missing or malformed file. Exit code 2."""


class ConfigError(UsageError):
    """A configuration key is unknown, of the wrong type, or out of range. Names the key."""


class IntegrityError(BwcError):
    """Evidence or a firmware bundle failed verification. Carries the offending file and reason,
    and for evidence a stable finding ``code`` (``evidence.findings.Code``) when known.
    """

    def __init__(self, reason: str, *, path: str | None = None, code: str | None = None) -> None:
        self.reason = reason
        self.path = path
        self.code = code
        super().__init__(f"{path}: {reason}" if path else reason)


class HardwareError(BwcError, OSError):
    """A device could not be opened or stopped responding."""


class StorageFullError(BwcError, OSError):
    """Writing would eat into the storage reserve kept free for sealing and events."""


class RefusedError(BwcError):
    """An operation was refused before anything was changed (firmware flash, re-provisioning)."""
