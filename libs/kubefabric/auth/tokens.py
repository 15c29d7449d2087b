"""Auth tokens: etcd's `--auth-token simple` (the default) and `jwt,...`.

Simple tokens are opaque to clients, as etcd's are, and live for 5 minutes after their last use.
etcd replicates each simple token through raft; KubeFabric's kv-router replicas share no
memory, so a simple token is signed instead: HMAC-SHA256 (the key is in the auth store, replaced
at every AuthEnable) over the user name, the issue time, a random part and a fingerprint of the
user's password hash. So any replica accepts it, and it stops working when auth is disabled, the
user is deleted or their password changes (etcd invalidates the user's tokens then too). Each
replica keeps its own idle deadline per token: a token first seen by a replica counts from its
issue time.

JWT tokens carry etcd's claims (username, revision, exp), signed with --auth-token's key; a JWT
of an older auth revision is refused on KV requests with etcd's "revision of auth store is old".
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass
from typing import Any

import jwt

from kubefabric.config import Duration

from kubefabric.etcd import errors
from .state import AuthState

SIMPLE_TTL_S = 300.0  # etcd's simpleTokenTTLDefault
JWT_DEFAULT_TTL_S = 300.0
_MAX_TRACKED = 100_000


@dataclass(frozen=True)
class Identity:
    """Who is calling: a user name and the auth revision their credential is of (0: none)."""
    user: str
    revision: int


class TokenError(ValueError):
    """--auth-token cannot be used (one line for the start-up error)."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _fingerprint(state: AuthState, user: str) -> bytes:
    u = state.users.get(user)
    return hashlib.sha256(u.password).digest()[:8] if u is not None else b""


class SimpleTokens:
    kind = "simple"

    def __init__(self, ttl_s: float = SIMPLE_TTL_S):
        self.ttl_s = ttl_s
        self.deadlines: dict[str, float] = {}  # token -> idle deadline on this replica

    def _sign(self, state: AuthState, user: str, issued: int, nonce: str) -> str:
        msg = b"\0".join((user.encode(), str(issued).encode(), nonce.encode(), _fingerprint(state, user)))
        return _b64(hmac.new(state.secret, msg, hashlib.sha256).digest())

    def assign(self, state: AuthState, user: str) -> str:
        issued = int(time.time())
        nonce = secrets.token_urlsafe(12)
        token = f"{_b64(user.encode())}.{issued}.{nonce}.{self._sign(state, user, issued, nonce)}"
        self._track(token, time.monotonic() + self.ttl_s)
        return token

    def info(self, state: AuthState, token: str) -> Identity | None:
        """The token's identity (of the current revision), or None when it is not valid."""
        try:
            user_b64, issued_s, nonce, sig = token.split(".")
            user, issued = _unb64(user_b64).decode(), int(issued_s)
        except (ValueError, UnicodeDecodeError):
            return None
        if not state.secret or not hmac.compare_digest(sig, self._sign(state, user, issued, nonce)):
            return None
        now = time.monotonic()
        deadline = self.deadlines.get(token)
        if deadline is None:  # first seen here: its life counts from its issue time
            deadline = now + (issued + self.ttl_s - time.time())
        if deadline < now:
            self.deadlines.pop(token, None)
            return None
        self._track(token, now + self.ttl_s)
        return Identity(user, state.revision)

    def _track(self, token: str, deadline: float) -> None:
        if len(self.deadlines) >= _MAX_TRACKED:
            now = time.monotonic()
            self.deadlines = {t: d for t, d in self.deadlines.items() if d >= now}
        self.deadlines[token] = deadline


class JWTTokens:
    kind = "jwt"

    def __init__(self, options: dict[str, str]):
        self.jwt = jwt
        unknown = set(options) - {"sign-method", "pub-key", "priv-key", "ttl"}
        if unknown:
            raise TokenError(f"unknown option {sorted(unknown)[0]!r} (sign-method, pub-key, "
                             "priv-key, ttl)")
        self.method = options.get("sign-method", "")
        try:
            algorithm = jwt.get_algorithm_by_name(self.method)
        except (NotImplementedError, KeyError):
            raise TokenError(f"sign-method {self.method!r} is not a JWT signing method "
                             "(RS256, PS256, ES256, EdDSA, HS256, ...)") from None
        self.ttl_s = _duration(options.get("ttl", "")) or JWT_DEFAULT_TTL_S
        pub, priv = (_read(options.get(k, "")) for k in ("pub-key", "priv-key"))
        self.sign_key: Any
        self.verify_key: Any
        if self.method.startswith("HS"):
            if not priv:
                raise TokenError("sign-method HS* needs priv-key (the shared secret)")
            self.sign_key = self.verify_key = priv
        else:
            if not pub and not priv:
                raise TokenError("needs pub-key (to verify) and priv-key (to sign)")
            try:
                self.sign_key = algorithm.prepare_key(priv) if priv else None
                self.verify_key = (algorithm.prepare_key(pub) if pub
                                   else self.sign_key.public_key())
            except Exception as err:  # a malformed PEM: say which
                raise TokenError(f"cannot load the keys: {err}") from None

    def assign(self, state: AuthState, user: str) -> str:
        if self.sign_key is None:
            raise errors.EtcdError(errors.AUTH_FAILED.code,
                                   "auth: token signing attempted with verify-only key")
        claims = {"username": user, "revision": state.revision, "exp": int(time.time() + self.ttl_s)}
        return self.jwt.encode(claims, self.sign_key, algorithm=self.method)

    def info(self, state: AuthState, token: str) -> Identity | None:
        try:
            claims = self.jwt.decode(token, self.verify_key, algorithms=[self.method])
        except self.jwt.PyJWTError:
            return None
        user, revision = claims.get("username"), claims.get("revision")
        if not isinstance(user, str) or not isinstance(revision, (int, float)):
            return None
        return Identity(user, int(revision))


def _read(path: str) -> bytes:
    if not path:
        return b""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as err:
        raise TokenError(f"cannot read {path}: {err.strerror}") from None


def _duration(text: str) -> float:
    if not text:
        return 0.0
    try:
        return float(Duration()(text))
    except Exception:
        raise TokenError(f"ttl {text!r} is not a duration such as 5m or 300s") from None


def provider(spec: str, simple_ttl_s: float = SIMPLE_TTL_S):
    """The token provider of etcd's --auth-token value: simple (valid simple_ttl_s after its last
    use, etcd's --auth-token-ttl), or jwt,sign-method=...,..."""
    kind, *rest = spec.split(",")
    if kind == "simple" and not rest:
        return SimpleTokens(simple_ttl_s)
    if kind == "jwt":
        options = {}
        for item in rest:
            name, sep, value = item.partition("=")
            if not sep:
                raise TokenError(f"option {item!r} is not name=value")
            options[name] = value
        return JWTTokens(options)
    raise TokenError(f"{spec!r}: use simple or jwt,sign-method=...,pub-key=...,priv-key=...")


def new_secret() -> bytes:
    return os.urandom(32)
