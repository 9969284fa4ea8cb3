"""Reader PINs, kept as salted scrypt hashes (hashlib.scrypt, RFC 7914)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

# n=2**14, r=8: about 16 MiB and tens of milliseconds per check, which slows guessing
# without making sign-in noticeable.
_N, _R, _P = 2**14, 8, 1
_PREFIX = "scrypt"
MIN_PIN_LENGTH = 4


def hash_pin(pin: str) -> str:
    """``scrypt$n$r$p$salt$hash`` with a fresh random 16-byte salt."""
    if len(pin) < MIN_PIN_LENGTH:
        raise ValueError(f"a PIN needs at least {MIN_PIN_LENGTH} characters")
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(pin.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    encode = lambda b: base64.b64encode(b).decode("ascii")  # noqa: E731
    return f"{_PREFIX}${_N}${_R}${_P}${encode(salt)}${encode(digest)}"


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
