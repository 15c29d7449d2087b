"""Patch bodies applied to an object: JSON patch (RFC 6902, the jsonpatch library), JSON merge
patch (RFC 7386), strategic merge patch read as a merge patch (custom resources have no patch
strategies; kube-apiserver refuses it for them, this server accepts it), and server-side apply's
configuration (YAML or JSON)."""
from __future__ import annotations

import copy
from typing import Any

import jsonpatch
import yaml

from . import status

MAX_JSON_PATCH_OPERATIONS = 10000


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def apply_patch(kind: str, live: dict, body: bytes) -> dict:
    """live with the patch applied; 400 for a patch that does not parse, 422 for one that does
    not apply."""
    if kind == "json":
        ops = status.json_body(body, list, "error decoding patch",
                               "json: cannot unmarshal object into Go value of type jsonpatch.Patch")
        if len(ops) > MAX_JSON_PATCH_OPERATIONS:
            raise status.ApiError(413, "RequestEntityTooLarge",
                                  f"Request entity too large: The allowed maximum operations in a "
                                  f"JSON patch is {MAX_JSON_PATCH_OPERATIONS}, got {len(ops)}")
        try:
            patch = jsonpatch.JsonPatch(ops)
            out = patch.apply(copy.deepcopy(live))
        except (jsonpatch.InvalidJsonPatch, TypeError) as err:
            raise status.bad_request(str(err)) from None
        except (jsonpatch.JsonPatchConflict, jsonpatch.JsonPatchTestFailed,
                jsonpatch.JsonPointerException, KeyError, IndexError):
            # kube-apiserver says no more than this when a JSON patch does not apply
            raise status.ApiError(422, "Invalid", "the server rejected our request due to an "
                                  "error in our request", {}) from None
        if not isinstance(out, dict):
            raise status.ApiError(422, "", "the patch replaced the object with a non-object")
        return out
    return merge_patch(live, status.json_body(body, dict, "error decoding patch", "Invalid JSON Patch"))


def apply_configuration(body: bytes) -> dict:
    """Server-side apply's body: a YAML (or JSON) object."""
    try:
        config = yaml.safe_load(body or b"")
    except yaml.YAMLError as err:
        raise status.bad_request(f"error decoding YAML: {str(err).splitlines()[0]}") from None
    if not isinstance(config, dict):
        raise status.bad_request("error decoding YAML: the apply configuration must be an object")
    return config
