"""HariKube's published full HTTPTrigger example (serverless-kube-watch-trigger,
config/samples/triggers_v1_full.yaml) works on KubeFabric after changing only its apiVersion:
every field is honoured end to end, with real Secrets in the store, mutual TLS, basic auth,
headers from Secrets, an HMAC-SHA512 signature, selectors, the eventFilter, and the body
template. (The test points url.static at its local receiver: example.com is not reachable.)"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import ssl

import yaml

from triggertest import deployment, secret
from harness.client import Client
from receiver import Receiver
from harness.certs import CA
from trigger.compiled import compile_trigger

# HariKube's example, as published (only apiVersion changed).
HARIKUBE_FULL = """
apiVersion: triggers.kubefabric.io/v1
kind: HTTPTrigger
metadata:
  name: full-httptrigger-example
  namespace: default
spec:
  resource:
    apiVersion: apps/v1
    kind: Deployment
  namespaces:
    - default
    - kube-system
  labelSelectors:
    - app=frontend
    - tier=prod
  fieldSelectors:
    - metadata.name=my-deployment
  eventTypes:
    - ADDED
    - MODIFIED
    - DELETED
  eventFilter: 'ne .old.status.availableReplicas .new.status.availableReplicas'
  concurrency: 5
  sendInitialEvents: false
  url:
    static: "https://example.com/hook"
    # template: "https://example.com/hook/{{ .metadata.name }}"
  method: POST
  auth:
    basicAuth:
      user: ci-bot
      secretKeyRef:
        name: webhook-pass
        key: password
    tls:
      caRef:
        name: webhook-ca
        key: ca.crt
      certRef:
        name: webhook-cert
        key: tls.crt
      keyRef:
        name: webhook-cert
        key: tls.key
      insecureSkipVerify: false
  headers:
    static:
      X-Static-Token: "fixed-token-value"
      X-Cluster-ID: "cluster-001"
    template:
      X-Resource-Name: "{{ .metadata.name }}"
      X-Resource-Namespace: "{{ .metadata.namespace }}"
    fromSecretRef:
      X-Api-Key:
        name: api-secret
        key: api-key
      X-Other-Token:
        name: extra-secrets
        key: token
  body:
    contentType: application/json
    template: |
      {{ toJson . }}
    signature:
      header: X-Signature
      keySecretRef:
        name: sig-key
        key: key
      hmac:
        hashType: SHA512
  delivery:
    timeout: 30s
    retries: 5
"""

# The README's variant of the same example: a filter on the object alone.
README_FILTER = "ne .status.availableReplicas 0"


def test_example_compiles_unchanged():
    example = yaml.safe_load(HARIKUBE_FULL)
    t = compile_trigger(example, "file")
    assert t.error == "" and t.runnable
    s = t.spec
    assert (s.api_version, s.kind, s.namespaces) == ("apps/v1", "Deployment", ("default", "kube-system"))
    assert s.concurrency == 5 and s.retries == 5 and s.timeout == 30.0 and s.signature_hash == "SHA512"
    assert s.tls.ca.name == "webhook-ca" and s.tls.key.key == "tls.key" and not s.tls.insecure_skip_verify
    example["spec"]["eventFilter"] = README_FILTER
    assert compile_trigger(example, "file").runnable


def test_full_example_end_to_end(server_factory, start_trigger, tmp_path):
    ca = CA.new("function CA", tmp_path)
    ca.issue("function", tmp_path, server=True)
    ca.issue("trigger", tmp_path)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(tmp_path / "function.pem", tmp_path / "function-key.pem")
    ctx.load_verify_locations(ca.cert_file)
    ctx.verify_mode = ssl.CERT_REQUIRED       # mutual TLS: the trigger must present its cert
    receiver = Receiver(ssl_context=ctx)
    try:
        kf = server_factory("kubefabric")
        c = Client(kf.endpoint)
        sig_key = b"signing-key-\x00\xff"
        for key, value in (
                secret("webhook-pass", {"password": "s3cret"}),
                secret("webhook-ca", {"ca.crt": ca.cert_file.read_bytes()}),
                secret("webhook-cert", {"tls.crt": (tmp_path / "trigger.pem").read_bytes(),
                                        "tls.key": (tmp_path / "trigger-key.pem").read_bytes()}),
                secret("api-secret", {"api-key": "key-123"}),
                secret("extra-secrets", {"token": "tok-456"}),
                secret("sig-key", {"key": sig_key})):
            c.put(key, value)
        example = yaml.safe_load(HARIKUBE_FULL)
        example["spec"]["url"]["static"] = receiver.url + "/hook"
        start_trigger(kf.endpoint, [example])

        labels = {"app": "frontend", "tier": "prod"}
        key, v0 = deployment("my-deployment", labels=labels, available=0)
        r_added = c.put(key, v0).header.revision
        c.put(*deployment("my-deployment", labels=labels, available=0))          # same: filtered
        r_scaled = c.put(*deployment("my-deployment", labels=labels, available=2)).header.revision
        c.put(*deployment("my-deployment", "other", labels=labels, available=1))  # namespace
        c.put(*deployment("other-deployment", labels=labels, available=1))        # field selector
        c.put(*deployment("my-deployment", "kube-system", labels={"app": "frontend"}, available=1))
        r_sys = c.put(*deployment("my-deployment", "kube-system", labels=labels, available=3)).header.revision

        receiver.wait_for(lambda calls: sum(x.status == 200 for x in calls) >= 3, what="3 events")
        import time
        time.sleep(1.5)   # nothing else may arrive
        calls = receiver.accepted()
        assert [x.ce_id for x in calls] == [
            f"/registry/deployments/default/my-deployment@{r_added}",
            f"/registry/deployments/default/my-deployment@{r_scaled}",
            f"/registry/deployments/kube-system/my-deployment@{r_sys}"]
        # kube-system's object started matching the label selector: ADDED (kube's watch rule)
        assert [x.ce_type.rsplit(".", 1)[1] for x in calls] == ["add", "update", "add"]
        for call in calls:
            h = call.headers
            assert call.method == "POST" and call.path == "/hook"
            assert h["Content-Type"] == "application/json"
            assert h["X-Static-Token"] == "fixed-token-value" and h["X-Cluster-Id"] == "cluster-001"
            obj = json.loads(call.body)
            assert h["X-Resource-Name"] == "my-deployment"
            assert h["X-Resource-Namespace"] == obj["metadata"]["namespace"]
            assert h["X-Api-Key"] == "key-123" and h["X-Other-Token"] == "tok-456"
            assert h["Authorization"] == "Basic " + base64.b64encode(b"ci-bot:s3cret").decode()
            assert h["X-Signature"] == hmac.new(sig_key, call.body, hashlib.sha512).hexdigest()
            assert call.body.endswith(b"}\n")          # the template's own newline
            assert obj["kind"] == "Deployment" and obj["metadata"]["name"] == "my-deployment"
            assert call.peer_cert and ("commonName", "trigger") in [x for rdn in call.peer_cert["subject"] for x in rdn]
        assert json.loads(calls[1].body)["status"]["availableReplicas"] == 2
        c.close()
    finally:
        receiver.close()
