"""Optional authentication of the REST API: bearer tokens that each stand for one customer.

``ORDER_SYSTEM_API_TOKENS`` turns it on. It holds ``token=customerId`` pairs separated by
commas or newlines, or ``@/path/to/file`` naming a file of such pairs, one per line (``#``
starts a comment). A file keeps the tokens out of the process environment. Tokens are at least
16 characters long; only their SHA-256 digests are kept in memory, and no error or repr shows
one.

Unset (the tutorial's default), there is no authentication: anyone who reaches the port can
act on any order.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from pathlib import Path

from ..domain.errors import ConfigError

ENV = "ORDER_SYSTEM_API_TOKENS"
MIN_TOKEN_LENGTH = 16
MAX_TOKEN_LENGTH = 512
MAX_FILE_BYTES = 1_000_000
MAX_CUSTOMER_LENGTH = 64
_TOKEN = re.compile(r"[\x21-\x7e]+")  # visible ASCII, as an Authorization header carries it


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class ApiTokens:
    """Which customer a bearer token stands for."""

    def __init__(self, customers: Mapping[str, str]) -> None:
        """``customers`` maps each token to its customer id."""
        self._customers = {_digest(token): customer for token, customer in customers.items()}

    @classmethod
    def parse(cls, text: str, source: str = ENV) -> ApiTokens:
        """Read ``token=customerId`` pairs; ``ConfigError`` names the entry, never its token."""
        customers: dict[str, str] = {}
        entries = [line.split("#", 1)[0].strip() for line in re.split(r"[,\n]", text)]
        for number, entry in enumerate(entries, 1):
            if not entry:
                continue
            token, sep, customer = (part.strip() for part in entry.partition("="))
            where = f"{source}: entry {number}"
            if not sep or not token or not customer:
                raise ConfigError(f"{where} is not of the form token=customerId")
            if not (MIN_TOKEN_LENGTH <= len(token) <= MAX_TOKEN_LENGTH) or not _TOKEN.fullmatch(token):
                raise ConfigError(f"{where}: a token must be {MIN_TOKEN_LENGTH} to {MAX_TOKEN_LENGTH} "
                                  "visible ASCII characters (e.g. from `openssl rand -hex 24`)")
            if len(customer) > MAX_CUSTOMER_LENGTH:
                raise ConfigError(f"{where}: the customer id is longer than {MAX_CUSTOMER_LENGTH} characters")
            if token in customers:
                raise ConfigError(f"{where}: the same token is given twice")
            customers[token] = customer
        if not customers:
            raise ConfigError(f"{source} names no token; unset {ENV} to turn authentication off")
        return cls(customers)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ApiTokens | None:
        """The tokens ``ORDER_SYSTEM_API_TOKENS`` configures, or None (authentication off)."""
        raw = (os.environ if env is None else env).get(ENV, "").strip()
        if not raw:
            return None
        if not raw.startswith("@"):
            return cls.parse(raw)
        path = Path(raw[1:]).expanduser()
        try:
            if path.stat().st_size > MAX_FILE_BYTES:
                raise ConfigError(f"{ENV}: {path} is larger than {MAX_FILE_BYTES} bytes")
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{ENV}: cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
        return cls.parse(text, source=str(path))

    def customer(self, token: str) -> str | None:
        """The customer the token stands for, or None for an unknown token."""
        if len(token) > MAX_TOKEN_LENGTH:
            return None
        return self._customers.get(_digest(token))

    def __len__(self) -> int:
        return len(self._customers)

    def __repr__(self) -> str:
        return f"ApiTokens({len(self)} token(s) for {len(set(self._customers.values()))} customer(s))"
