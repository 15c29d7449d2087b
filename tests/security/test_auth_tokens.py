"""--auth-token providers (kubefabric.auth.tokens) without servers: JWT tokens as etcd's jwt
provider makes them (RS256 and ES256 key pairs from files, HS256), refused when forged, expired
or signed by another key; a verify-only provider cannot sign; bad --auth-token values are one-line
errors. (The simple provider is covered end to end by tests/differential/test_auth.py.)"""
from __future__ import annotations

import time

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from kubefabric.auth.state import AuthState
from kubefabric.auth.tokens import TokenError, provider
from kubefabric.etcd.errors import EtcdError


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
