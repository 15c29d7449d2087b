"""Backend database addresses as operators write them.

    postgres://user:pass@host:5432/db?sslmode=verify-full&sslrootcert=/ca.pem   (postgresql:// too)
    mysql://user:pass@host:3306/db?ssl-ca=/ca.pem                              (mariadb:// too)
    sqlite:///absolute/path/to/dir   sqlite://relative/dir

The password never appears in logs or errors: use `DSN.redacted()` whenever a DSN is shown.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlsplit

from kubefabric.rpc.startup import StartupError

SCHEMES = {"postgres": "postgres", "postgresql": "postgres", "mysql": "mysql", "mariadb": "mysql",
           "sqlite": "sqlite"}
DEFAULT_PORTS = {"postgres": 5432, "mysql": 3306}


class DSNError(StartupError, ValueError):
    """A DSN that cannot work; the message is one line and never holds the password."""


@dataclass(frozen=True)
class DSN:
    kind: str                 # "postgres", "mysql" or "sqlite"
    host: str = ""
    port: int = 0
    user: str = ""
    password: str = field(default="", repr=False)
    database: str = ""        # database name; for sqlite the data directory
    params: tuple[tuple[str, str], ...] = ()
    text: str = field(default="", repr=False)  # as given (contains the password)

    def param(self, name: str, default: str | None = None) -> str | None:
        for k, v in self.params:
            if k == name:
                return v
        return default

    def redacted(self) -> str:
        if self.kind == "sqlite":
            return f"sqlite://{self.database}"
        auth = f"{self.user}:***@" if self.password else (f"{self.user}@" if self.user else "")
        query = "&".join(f"{k}={v}" for k, v in self.params)
        return f"{self.kind}://{auth}{self.host}:{self.port}/{self.database}" + (f"?{query}" if query else "")

    def __str__(self) -> str:
        return self.redacted()


def parse_dsn(text: str) -> DSN:
    """Parse a backend DSN; DSNError says what is wrong (without echoing the password)."""
    if "://" not in text:
        raise DSNError("a backend DSN looks like postgres://user:pass@host:5432/db, "
                       "mysql://user:pass@host:3306/db or sqlite:///path/to/dir")
    scheme = text.split("://", 1)[0].lower()
    kind = SCHEMES.get(scheme)
    if kind is None:
        raise DSNError(f"unknown DSN scheme {scheme!r}: use one of {', '.join(sorted(SCHEMES))}")
    if kind == "sqlite":
        path = text.split("://", 1)[1]
        if not path:
            raise DSNError("sqlite:// needs a directory: sqlite:///var/lib/kubefabric or sqlite://data")
        return DSN(kind="sqlite", database=path, text=text)
    try:
        parts = urlsplit(text)
        port = parts.port or DEFAULT_PORTS[kind]
    except ValueError as err:
        raise DSNError(f"invalid {kind} DSN: {err}") from None
    database = unquote(parts.path.lstrip("/"))
    if not parts.hostname:
        raise DSNError(f"the {kind} DSN names no host: {kind}://user:pass@host:port/db")
    if not database:
        raise DSNError(f"the {kind} DSN names no database: {kind}://user:pass@host:port/db")
    return DSN(kind=kind, host=parts.hostname, port=port, user=unquote(parts.username or ""),
               password=unquote(parts.password or ""), database=database,
               params=tuple(parse_qsl(parts.query, keep_blank_values=True)), text=text)
