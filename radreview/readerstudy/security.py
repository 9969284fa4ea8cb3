"""Reader PINs and sign-in throttling.

PINs are kept as salted scrypt hashes (hashlib.scrypt, RFC 7914). A PIN must be at least
:data:`DEFAULT_MIN_PIN_LENGTH` characters (the coordinator may choose another minimum, never
below :data:`ABSOLUTE_MIN_PIN_LENGTH`, when creating the study) and not one of the PINs people
guess first: one repeated character, a run such as 123456 or 654321, a repeated block such as
121212, a keyboard row, or the reader's own code.

Failed sign-ins are counted from the audit log (so every process and workstation sees the same
count): after :attr:`SignInPolicy.delay_after` failures each further attempt must wait, the wait
doubling with every failure; after :attr:`SignInPolicy.lock_after` the reader is locked until the
coordinator unlocks them. :meth:`SignInPolicy.decide` is the rule; ``reading.sign_in`` applies it
on SQLite and the ``radreview_sign_in`` database function applies the same rule on PostgreSQL.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

# n=2**14, r=8: about 16 MiB and tens of milliseconds per check, which slows guessing
# without making sign-in noticeable.
_N, _R, _P = 2**14, 8, 1
_PREFIX = "scrypt"
DEFAULT_MIN_PIN_LENGTH = 6
ABSOLUTE_MIN_PIN_LENGTH = 4
MAX_PIN_LENGTH = 128
# Kept for callers of the old name: the default minimum.
MIN_PIN_LENGTH = DEFAULT_MIN_PIN_LENGTH

_KEYBOARD_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm", "qwertzuiop", "azertyuiop", "1234567890")
_COMMON = {
    "password", "passw0rd", "letmein", "welcome", "iloveyou", "secret", "admin", "abc123",
    "123abc", "qwerty123", "radreview", "reader", "123321", "147258", "159753", "147852",
    "258456", "789456", "123654", "102030", "112233", "998877", "111222", "123123123",
}


def pin_problem(pin: str, min_length: int = DEFAULT_MIN_PIN_LENGTH, reader_code: str | None = None) -> str | None:
    """Why ``pin`` is refused, or None when it is acceptable."""
    if not isinstance(pin, str):
        return "the PIN must be text"
    if len(pin) < max(min_length, ABSOLUTE_MIN_PIN_LENGTH):
        return f"a PIN needs at least {max(min_length, ABSOLUTE_MIN_PIN_LENGTH)} characters"
    if len(pin) > MAX_PIN_LENGTH:
        return f"a PIN has at most {MAX_PIN_LENGTH} characters"
    if not pin.isprintable():
        return "a PIN cannot contain control characters"
    folded = pin.lower()
    if len(set(folded)) <= 2:
        return "this PIN is too easy to guess (one or two repeated characters)"
    steps = {ord(b) - ord(a) for a, b in zip(folded, folded[1:])}
    if steps in ({1}, {-1}) or (folded.isdigit() and {s % 10 for s in steps} in ({1}, {9})):
        return "this PIN is too easy to guess (a run such as 123456 or 654321)"
    for size in range(1, len(folded) // 2 + 1):
        if len(folded) % size == 0 and folded[:size] * (len(folded) // size) == folded:
            return "this PIN is too easy to guess (a repeated block such as 121212)"
    if folded in _COMMON or any(folded in row or folded in row[::-1] for row in _KEYBOARD_ROWS):
        return "this PIN is too easy to guess (a common PIN or a keyboard row)"
    code = (reader_code or "").lower()
    # (A one- or two-character id, such as "1", turns up in good PINs by chance.)
    if code and (folded == code or (len(code) >= 3 and code in folded)):
        return "the PIN cannot contain the reader's id"
    return None


def check_pin(pin: str, min_length: int = DEFAULT_MIN_PIN_LENGTH, reader_code: str | None = None) -> None:
    """Raise ValueError with the reason when :func:`pin_problem` refuses ``pin``."""
    problem = pin_problem(pin, min_length, reader_code)
    if problem:
        raise ValueError(problem)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_pin(pin: str) -> str:
    """``scrypt$n$r$p$salt$hash`` with a fresh random 16-byte salt (strength is checked by the caller)."""
    if len(pin) < ABSOLUTE_MIN_PIN_LENGTH:
        raise ValueError(f"a PIN needs at least {ABSOLUTE_MIN_PIN_LENGTH} characters")
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(pin.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return f"{_PREFIX}${_N}${_R}${_P}${_b64(salt)}${_b64(digest)}"


def pin_digest(pin: str, salt_spec: str) -> str:
    """The base64 scrypt digest of ``pin`` under ``scrypt$n$r$p$salt`` (a stored hash without its
    digest, as the PostgreSQL sign-in function hands it out). Parameters are bounded so that a
    hostile server cannot make the client hash for minutes."""
    prefix, n, r, p, salt = salt_spec.split("$")[:5]
    n_, r_, p_ = int(n), int(r), int(p)
    if prefix != _PREFIX or not (2 <= n_ <= 2**17 and 1 <= r_ <= 16 and 1 <= p_ <= 4):
        raise ValueError("unexpected PIN hash parameters")
    digest = hashlib.scrypt(pin.encode(), salt=base64.b64decode(salt), n=n_, r=r_, p=p_, dklen=32,
                            maxmem=256 * 1024 * 1024)
    return _b64(digest)


def verify_pin(pin: str, stored: str) -> bool:
    """Whether ``pin`` matches a hash made by :func:`hash_pin` (constant-time comparison)."""
    try:
        prefix, n, r, p, salt, digest = stored.split("$")
        if prefix != _PREFIX:
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(
            pin.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
            dklen=len(expected), maxmem=64 * 1024 * 1024,
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


@dataclass(frozen=True)
class SignInPolicy:
    """How sign-in failures are answered; stored with the study (``settings["security"]``)."""

    pin_min_length: int = DEFAULT_MIN_PIN_LENGTH
    delay_after: int = 3  # failures before each attempt has to wait
    delay_s: float = 1.0  # the first wait; it doubles with every further failure
    delay_max_s: float = 300.0
    lock_after: int = 10  # failures that lock the reader until the coordinator unlocks them

    def validate(self) -> None:
        if not ABSOLUTE_MIN_PIN_LENGTH <= self.pin_min_length <= MAX_PIN_LENGTH:
            raise ValueError(f"the minimum PIN length must be between {ABSOLUTE_MIN_PIN_LENGTH} and {MAX_PIN_LENGTH}")
        if not 1 <= self.lock_after <= 1000:
            raise ValueError("the lock threshold must be between 1 and 1000 failed sign-ins")
        if not 0 <= self.delay_after <= self.lock_after:
            raise ValueError("sign-in delays must start at or before the lock threshold")
        if not (0.0 <= self.delay_s <= self.delay_max_s <= 86400.0):
            raise ValueError("sign-in delays must be between 0 and 86400 s, the first no longer than the longest")

    def to_settings(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_settings(cls, settings: dict[str, Any] | None) -> SignInPolicy:
        """The policy stored with a study; defaults for studies made before it existed."""
        stored = (settings or {}).get("security") or {}
        known = {k: stored[k] for k in asdict(cls()) if k in stored}
        return cls(**known)

    def wait_s(self, failures: int) -> float:
        """How long after the last failure the next attempt must wait."""
        if failures < self.delay_after or self.delay_s <= 0:
            return 0.0
        return min(self.delay_max_s, self.delay_s * 2.0 ** min(failures - self.delay_after, 60))

    def decide(self, failures: int, last_failure_at: datetime | None, now: datetime) -> tuple[str | None, float]:
        """("locked" | "throttled" | None, seconds still to wait) before the PIN is even checked."""
        if failures >= self.lock_after:
            return "locked", 0.0
        wait = self.wait_s(failures)
        if wait > 0 and last_failure_at is not None:
            remaining = wait - (now - last_failure_at).total_seconds()
            if remaining > 0:
                return "throttled", remaining
        return None, 0.0
