"""Content negotiation: what a response is rendered as (Accept) and what a body is read as
(Content-Type). Custom resources speak JSON and YAML, plus the meta.k8s.io transforms
(Table, PartialObjectMetadata[List]) that kubectl and metadata clients request."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import yaml

from . import status

JSON, YAML = "application/json", "application/yaml"
_TRANSFORMS = ("Table", "PartialObjectMetadata", "PartialObjectMetadataList")


@dataclass(frozen=True)
class Target:
    media: str                 # application/json or application/yaml
    transform: str = ""        # "", Table, PartialObjectMetadata, PartialObjectMetadataList
    version: str = "v1"        # meta.k8s.io version of the transform

    @property
    def meta_api_version(self) -> str:
        return f"meta.k8s.io/{self.version}"


def _entries(accept: str) -> list[tuple[float, int, str, dict[str, str]]]:
    out = []
    for i, part in enumerate(p for p in accept.split(",") if p.strip()):
        fields = [f.strip() for f in part.split(";")]
        params: dict[str, str] = {}
        for f in fields[1:]:
            k, _, v = f.partition("=")
            params[k.strip().lower()] = v.strip()
        try:
            q = float(params.pop("q", "1"))
        except ValueError:
            q = 1.0
        out.append((-q, i, fields[0].lower(), params))
    return sorted(out)


def negotiate(accept: str | None) -> Target:
    """The first acceptable rendering in the client's preference order, or 406 NotAcceptable."""
    if not accept:
        return Target(JSON)
    for _, _, media, params in _entries(accept):
        if media in ("application/json", "application/*", "*/*"):
            kind = params.get("as")
            if kind is None:
                return Target(JSON)
            if (kind in _TRANSFORMS and params.get("g") == "meta.k8s.io"
                    and params.get("v") in ("v1", "v1beta1")):
                return Target(JSON, kind, params["v"])
        elif media == "application/yaml" and "as" not in params:
            return Target(YAML)
    raise status.not_acceptable(accept)


def render(target_media: str, obj: Any) -> bytes:
    if target_media == YAML:
        return yaml.safe_dump(obj, sort_keys=True, allow_unicode=True).encode()
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


PATCH_TYPES = {
    "application/json-patch+json": "json",
    "application/merge-patch+json": "merge",
    "application/strategic-merge-patch+json": "strategic",
    "application/apply-patch+yaml": "apply",
    "application/apply-patch+cbor": None,
}


def read_body(content_type: str, body: bytes) -> Any:
    """A create/update body (JSON or YAML) as a Python value, or 400/415."""
    media = content_type.split(";")[0].strip().lower()
    if media in ("", "application/json", "*/*"):
        try:
            return json.loads(body or b"null")
        except (ValueError, UnicodeDecodeError) as err:
            raise status.bad_request(f"the object provided is unrecognized: {err}") from None
    if media == "application/yaml":
        try:
            return yaml.safe_load(body or b"")
        except yaml.YAMLError as err:
            raise status.bad_request(f"error converting YAML to JSON: {str(err).splitlines()[0]}") from None
    raise status.unsupported_media_type(content_type)


def patch_type(content_type: str) -> str:
    media = content_type.split(";")[0].strip().lower()
    kind = PATCH_TYPES.get(media)
    if kind is None:
        raise status.ApiError(
            415, "UnsupportedMediaType",
            f'the body of the request was in an unknown format - accepted media types include: '
            f'application/json-patch+json, application/merge-patch+json, '
            f'application/apply-patch+yaml, application/strategic-merge-patch+json')
    return kind
