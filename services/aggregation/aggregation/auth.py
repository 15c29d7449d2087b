"""Delegated authentication and authorization, as every aggregated API server does it.

Who is asking:
1. a client certificate issued by the requestheader client CA, whose common name is one of the
   allowed names (any, when none are set): kube-apiserver's front proxy. The user then comes from
   the X-Remote-User, X-Remote-Group and X-Remote-Extra-* headers it sets;
2. a client certificate issued by --client-ca-file: the user is its CN, groups its O values;
3. a bearer token: a TokenReview against kube-apiserver (answers cached for --authentication-cache-ttl);
4. otherwise system:anonymous.
May they: paths in --authorization-always-allow-paths and members of system:masters always; others
by a SubjectAccessReview against kube-apiserver (answers cached), so RBAC decides per verb,
resource and namespace. A denial is kube-apiserver's 403 Forbidden, with its wording.
"""
from __future__ import annotations

import datetime as dt
import logging
import ssl
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID
from lightkube import ApiError, AsyncClient, KubeConfig
from lightkube.models.authentication_v1 import TokenReviewSpec
from lightkube.models.authorization_v1 import (NonResourceAttributes, ResourceAttributes,
                                               SubjectAccessReviewSpec)
from lightkube.resources.authentication_v1 import TokenReview
from lightkube.resources.authorization_v1 import SubjectAccessReview
from lightkube.resources.core_v1 import ConfigMap, Namespace

from . import status

log = logging.getLogger("kubefabric.aggregation.auth")

ANONYMOUS = "system:anonymous"


@dataclass(frozen=True)
class User:
    name: str
    groups: tuple[str, ...] = ()
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()
    uid: str = ""

    @property
    def extra_dict(self) -> dict[str, list[str]]:
        return {k: list(v) for k, v in self.extra}


@dataclass(frozen=True)
class Attributes:
    """What a request does, in authorization's terms (kube-apiserver's RequestInfo)."""
    verb: str
    path: str
    resource_request: bool = False
    group: str = ""
    version: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""

    def forbidden(self, user: User, reason: str = "") -> status.ApiError:
        if not self.resource_request:
            msg = f'User "{user.name}" cannot {self.verb} path "{self.path}"'
        else:
            res = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
            where = (f'in the namespace "{self.namespace}"' if self.namespace
                     else "at the cluster scope")
            msg = (f'User "{user.name}" cannot {self.verb} resource "{res}" in API group '
                   f'"{self.group}" {where}')
        if reason:
            msg = f"{msg}: {reason}"
        if not self.resource_request:
            return status.ApiError(403, "Forbidden", f"forbidden: {msg}", {})
        return status.forbidden(self.group, self.resource, self.name, msg)


@dataclass
class AuthConfig:
    requestheader_ca: list[Any] = field(default_factory=list)   # cryptography certificates
    allowed_names: tuple[str, ...] = ()
    username_headers: tuple[str, ...] = ("X-Remote-User",)
    uid_headers: tuple[str, ...] = ("X-Remote-Uid",)
    group_headers: tuple[str, ...] = ("X-Remote-Group",)
    extra_prefixes: tuple[str, ...] = ("X-Remote-Extra-",)
    client_ca: list[Any] = field(default_factory=list)
    always_allow_paths: tuple[str, ...] = ("/healthz", "/readyz", "/livez")
    always_allow_groups: tuple[str, ...] = ("system:masters",)
    cache_ttl: float = 10.0
    anonymous: bool = True


def load_certificates(pem_path: str) -> list:
    with open(pem_path, "rb") as f:
        return x509.load_pem_x509_certificates(f.read())


def _issued_by(cert, cas: list) -> bool:
    for ca in cas:
        try:
            cert.verify_directly_issued_by(ca)
            return True
        except Exception:  # wrong issuer name or signature: try the next CA
            continue
    return False


def _valid_now(cert) -> bool:
    now = dt.datetime.now(dt.timezone.utc)
    return cert.not_valid_before_utc <= now <= cert.not_valid_after_utc


class Authenticator:
    def __init__(self, config: AuthConfig, reviewer: "Reviewer | None"):
        self.config = config
        self.reviewer = reviewer
        self._tokens: dict[str, tuple[float, User | None]] = {}

    async def authenticate(self, peer_der: bytes | None, headers) -> User | None:
        """The request's user, or None when credentials were offered and refused."""
        if peer_der:
            user = self._from_certificate(peer_der, headers)
            if user is not None:
                return user
        auth = headers.get("Authorization", "")
        if auth[:7].lower() == "bearer ":
            return await self._from_token(auth[7:].strip())
        if self.config.anonymous:
            return User(ANONYMOUS, ("system:unauthenticated",))
        return None

    def _from_certificate(self, der: bytes, headers) -> User | None:
        cert = x509.load_der_x509_certificate(der)
        if not _valid_now(cert):
            return None
        cn = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
        if self.config.requestheader_ca and _issued_by(cert, self.config.requestheader_ca):
            if self.config.allowed_names and not (set(cn) & set(self.config.allowed_names)):
                log.warning("front-proxy certificate CN %s is not in --requestheader-allowed-names", cn)
                return None
            return self._from_headers(headers)
        if self.config.client_ca and _issued_by(cert, self.config.client_ca):
            orgs = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
            return User(cn[0] if cn else "", tuple(orgs) + ("system:authenticated",))
        return None

    def _from_headers(self, headers) -> User | None:
        name = next((headers.get(h) for h in self.config.username_headers if headers.get(h)), None)
        if not name:
            return None
        uid = next((headers.get(h) for h in self.config.uid_headers if headers.get(h)), "")
        groups = [g for h in self.config.group_headers for g in headers.getall(h, [])]
        extra: dict[str, list[str]] = {}
        for key in headers:
            for prefix in self.config.extra_prefixes:
                if key.lower().startswith(prefix.lower()):
                    extra_key = urllib.parse.unquote(key[len(prefix):]).lower()
                    extra.setdefault(extra_key, []).extend(headers.getall(key))
        # as kube-apiserver's AuthenticatedGroupAdder: every authenticated user is in
        # system:authenticated (RBAC's discovery and public-info roles are bound to it)
        if "system:authenticated" not in groups and "system:unauthenticated" not in groups:
            groups.append("system:authenticated")
        return User(name, tuple(groups), tuple((k, tuple(v)) for k, v in sorted(extra.items())), uid)

    async def _from_token(self, token: str) -> User | None:
        now = time.monotonic()
        hit = self._tokens.get(token)
        if hit and hit[0] > now:
            return hit[1]
        if self.reviewer is None:
            return None
        user = await self.reviewer.token_review(token)
        if len(self._tokens) > 10_000:
            self._tokens.clear()
        self._tokens[token] = (now + self.config.cache_ttl, user)
        return user


class Authorizer:
    def __init__(self, config: AuthConfig, reviewer: "Reviewer | None"):
        self.config = config
        self.reviewer = reviewer
        self._cache: dict[tuple, tuple[float, bool, str]] = {}

    async def authorize(self, user: User, attrs: Attributes) -> tuple[bool, str]:
        if not attrs.resource_request and attrs.path in self.config.always_allow_paths:
            return True, ""
        if set(user.groups) & set(self.config.always_allow_groups):
            return True, ""
        if self.reviewer is None:
            return False, "no authorizer is configured"
        key = (user, attrs)
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit and hit[0] > now:
            return hit[1], hit[2]
        allowed, reason = await self.reviewer.access_review(user, attrs)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[key] = (now + self.config.cache_ttl, allowed, reason)
        return allowed, reason


class Reviewer:
    """TokenReview and SubjectAccessReview against kube-apiserver through lightkube."""

    def __init__(self, client):
        self.client = client

    @classmethod
    def from_kubeconfig(cls, path: str) -> "Reviewer":
        config = KubeConfig.from_file(path) if path else KubeConfig.from_env()
        return cls(AsyncClient(config))

    async def token_review(self, token: str) -> User | None:
        try:
            review = await self.client.create(TokenReview(spec=TokenReviewSpec(token=token)))
        except Exception as err:  # kube-apiserver unreachable: the request fails, not the server
            log.warning("TokenReview failed: %s", err)
            raise status.service_unavailable("authentication is unavailable: TokenReview failed") from None
        st = review.status
        if not st or not st.authenticated or not st.user:
            return None
        extra = tuple(sorted((k, tuple(v)) for k, v in (st.user.extra or {}).items()))
        return User(st.user.username or "", tuple(st.user.groups or ()), extra, st.user.uid or "")

    async def access_review(self, user: User, attrs: Attributes) -> tuple[bool, str]:
        spec = SubjectAccessReviewSpec(user=user.name, groups=list(user.groups),
                                       extra=user.extra_dict or None, uid=user.uid or None)
        if attrs.resource_request:
            spec.resourceAttributes = ResourceAttributes(
                group=attrs.group, version=attrs.version, resource=attrs.resource,
                subresource=attrs.subresource or None, namespace=attrs.namespace or None,
                name=attrs.name or None, verb=attrs.verb)
        else:
            spec.nonResourceAttributes = NonResourceAttributes(path=attrs.path, verb=attrs.verb)
        try:
            review = await self.client.create(SubjectAccessReview(spec=spec))
        except Exception as err:
            log.warning("SubjectAccessReview failed: %s", err)
            raise status.service_unavailable("authorization is unavailable: SubjectAccessReview failed") from None
        st = review.status
        return bool(st and st.allowed), (st.reason or "") if st else ""

    async def requestheader_settings(self) -> dict[str, str]:
        """kube-system/extension-apiserver-authentication: the front proxy's CA and names."""
        cm = await self.client.get(ConfigMap, "extension-apiserver-authentication",
                                   namespace="kube-system")
        return dict(cm.data or {})

    async def namespace_phase(self, name: str) -> str | None:
        """The namespace's phase (Active, Terminating), None when it does not exist."""
        try:
            ns = await self.client.get(Namespace, name)
        except ApiError as err:
            if err.status.code == 404:
                return None
            raise
        return (ns.status.phase if ns.status else None) or "Active"

    async def close(self) -> None:
        await self.client.close()


def server_context(cert_file: str, key_file: str, client_cas: list[str]) -> ssl.SSLContext:
    """TLS for the listener: client certificates optional, verified against the given CAs."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert_file, key_file)
    if client_cas:
        for ca in client_cas:
            ctx.load_verify_locations(cafile=ca)
        ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx

