"""--auth-token providers (kubefabric.auth.tokens), first without servers: JWT tokens as etcd's jwt
provider makes them (RS256 and ES256 key pairs from files, HS256), refused when forged, expired
or signed by another key; a verify-only provider cannot sign; bad --auth-token values are one-line
errors. (The simple provider is covered end to end by tests/differential/test_auth.py.)"""
from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import time

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from harness.etcdctl import etcdctl_binary
from harness.servers import start_etcd, start_kubefabric
from kubefabric.auth.state import AuthState
from kubefabric.auth.tokens import TokenError, provider
from kubefabric.etcd.errors import EtcdError
from kubefabric.proto.etcdserverpb import rpc_pb2, rpc_pb2_grpc


def key_files(tmp_path, key, name):
    priv = tmp_path / f"{name}.key"
    pub = tmp_path / f"{name}.pub"
    priv.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    return pub, priv


@pytest.mark.parametrize("method,make", [
    ("RS256", lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)),
    ("ES256", lambda: ec.generate_private_key(ec.SECP256R1()))])
def test_jwt_round_trip_and_refusals(tmp_path, method, make):
    pub, priv = key_files(tmp_path, make(), "a")
    other_pub, other_priv = key_files(tmp_path, make(), "b")
    state = AuthState(enabled=True, revision=7)
    tokens = provider(f"jwt,sign-method={method},pub-key={pub},priv-key={priv},ttl=5m")
    token = tokens.assign(state, "alice")
    ident = tokens.info(state, token)
    assert (ident.user, ident.revision) == ("alice", 7)
    # a replica with only the public key accepts it and cannot sign
    verifier = provider(f"jwt,sign-method={method},pub-key={pub}")
    assert verifier.info(state, token).user == "alice"
    with pytest.raises(EtcdError):
        verifier.assign(state, "alice")
    # another key, a forged payload, garbage: refused
    assert provider(f"jwt,sign-method={method},pub-key={other_pub},priv-key={other_priv}").info(
        state, token) is None
    head, body, sig = token.split(".")
    assert tokens.info(state, ".".join((head, body[:-2] + "AA", sig))) is None
    assert tokens.info(state, "not-a-token") is None


def test_jwt_expires(tmp_path):
    tokens = provider("jwt,sign-method=HS256,priv-key=" + str(_secret(tmp_path)) + ",ttl=1s")
    state = AuthState(enabled=True)
    token = tokens.assign(state, "bob")
    assert tokens.info(state, token).user == "bob"
    time.sleep(2.1)
    assert tokens.info(state, token) is None


def _secret(tmp_path):
    path = tmp_path / "hs.key"
    path.write_bytes(b"0123456789abcdef0123456789abcdef")
    return path


@pytest.mark.parametrize("spec,says", [
    ("bogus", "use simple or jwt"),
    ("jwt,sign-method=NOPE,pub-key=x", "not a JWT signing method"),
    ("jwt,sign-method=RS256", "needs pub-key"),
    ("jwt,sign-method=RS256,pub-key=/nonexistent/k.pub", "cannot read /nonexistent/k.pub"),
    ("jwt,sign-method=HS256", "needs priv-key"),
    ("jwt,sign-method=RS256,color=red", "unknown option 'color'"),
    ("jwt,sign-method", "is not name=value"),
])
def test_bad_auth_token_values_are_one_line_errors(spec, says):
    with pytest.raises(TokenError) as err:
        provider(spec)
    assert says in str(err.value) and "\n" not in str(err.value)


def test_jwt_tokens_through_servers_as_etcd(tmp_path):
    """--auth-token jwt on a running server, against Debian's etcd with the same flag and keys:
    etcdctl with a user and password, the token's claims, a token used on a request, a forged
    and an unknown token, a wrong password: the same outcomes."""
    pub, priv = key_files(tmp_path, rsa.generate_private_key(public_exponent=65537, key_size=2048), "jwt")
    flag = ["--auth-token", f"jwt,pub-key={pub},priv-key={priv},sign-method=RS256,ttl=5m"]
    outcomes = {}
    for kind, start in (("etcd", start_etcd), ("kubefabric", start_kubefabric)):
        (tmp_path / kind).mkdir()
        server = start(tmp_path / kind, flag)
        try:
            outcomes[kind] = _jwt_script(server.endpoint)
        finally:
            server.stop()
    assert outcomes["etcd"]["put as root"] == (0, "OK"), outcomes["etcd"]
    assert outcomes["kubefabric"] == outcomes["etcd"]


def _jwt_script(endpoint: str) -> dict:
    def ctl(*args: str) -> tuple[int, str]:
        out = subprocess.run([etcdctl_binary(), "--endpoints", endpoint, "--command-timeout", "5s",
                              *args], capture_output=True, text=True, timeout=60,
                             env={**os.environ, "ETCDCTL_API": "3"})
        return out.returncode, out.stdout.strip() + "".join(re.findall(r"\nError: .*", "\n" + out.stderr))

    got = {"user add": ctl("user", "add", "root:rootpw", "--interactive=false"),
           "grant": ctl("user", "grant-role", "root", "root"),
           "auth enable": ctl("auth", "enable"),
           "put as root": ctl("--user", "root:rootpw", "put", "/k", "v"),
           "wrong password": ctl("--user", "root:nope", "get", "/k"),
           "no user": ctl("get", "/k")}
    with grpc.insecure_channel(endpoint) as ch:
        token = rpc_pb2_grpc.AuthStub(ch).Authenticate(
            rpc_pb2.AuthenticateRequest(name="root", password="rootpw"), timeout=10).token
        header, claims, signature = token.split(".")
        claims = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))
        got["claims"] = (sorted(claims), claims["username"])
        kv = rpc_pb2_grpc.KVStub(ch)

        def get(with_token: str) -> str:
            try:
                resp = kv.Range(rpc_pb2.RangeRequest(key=b"/k"), metadata=[("token", with_token)], timeout=10)
                return resp.kvs[0].value.decode()
            except grpc.RpcError as err:
                return f"{err.code().name}: {err.details()}"
        got["with the token"] = get(token)
        got["forged"] = get(f"{header}.{base64.urlsafe_b64encode(b'{}').decode().rstrip('=')}.{signature}")
        got["unknown"] = get("not-a-token")
    return got
