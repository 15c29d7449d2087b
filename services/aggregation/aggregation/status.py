"""metav1.Status errors, worded as kube-apiserver words them (clients and kubectl match on the
reason and often show the message verbatim)."""
from __future__ import annotations

import json
from typing import Any


class ApiError(Exception):
    """A request that ends in a metav1.Status with status Failure."""

    def __init__(self, code: int, reason: str, message: str, details: dict | None = None,
                 meta: dict | None = None):
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message
        self.details = details
        self.meta = meta or {}

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": dict(self.meta),
                               "status": "Failure", "message": self.message}
        if self.reason:
            out["reason"] = self.reason
        if self.details is not None:
            out["details"] = self.details
        out["code"] = self.code
        return out


def success_status(details: dict | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}
    if details:
        out["details"] = details
    return out


def _qualified(group: str, resource: str) -> str:
    return f"{resource}.{group}" if group else resource


def _details(group: str, resource: str, name: str | None, causes: list | None = None) -> dict:
    d: dict[str, Any] = {}
    if name:
        d["name"] = name
    if group:
        d["group"] = group
    if resource:
        d["kind"] = resource
    if causes:
        d["causes"] = causes
    return d


def not_found(group: str, resource: str, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{_qualified(group, resource)} "{name}" not found',
                    _details(group, resource, name))


def already_exists(group: str, resource: str, name: str) -> ApiError:
    return ApiError(409, "AlreadyExists", f'{_qualified(group, resource)} "{name}" already exists',
                    _details(group, resource, name))


def conflict(group: str, resource: str, name: str, why: str) -> ApiError:
    return ApiError(409, "Conflict",
                    f'Operation cannot be fulfilled on {_qualified(group, resource)} "{name}": {why}',
                    _details(group, resource, name))


MODIFIED = "the object has been modified; please apply your changes to the latest version and try again"


def invalid(group: str, kind: str, name: str, causes: list[dict]) -> ApiError:
    """causes: [{"type": "FieldValueInvalid", "message": "...", "field": "spec.x"}]; the message
    joins them as kube-apiserver's field.ErrorList does."""
    parts = [f"{c['field']}: {c['message']}" if c.get("field") else c["message"] for c in causes]
    text = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
    qualified = f"{kind}.{group}" if group else kind
    return ApiError(422, "Invalid", f'{qualified} "{name}" is invalid: {text}',
                    {"name": name, "group": group, "kind": kind, "causes": causes})


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def json_body(body: bytes, kind: type, undecodable: str, wrong_kind: str):
    """`body` decoded as JSON, a `kind` (list or dict); 400 Bad Request "<undecodable>: <why>"
    when it does not decode, `wrong_kind` when it is something else."""
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError) as err:
        raise bad_request(f"{undecodable}: {err}") from None
    if not isinstance(value, kind):
        raise bad_request(wrong_kind)
    return value


def forbidden(group: str, resource: str, name: str, why: str) -> ApiError:
    what = f'{_qualified(group, resource)} "{name}"' if name else _qualified(group, resource)
    return ApiError(403, "Forbidden", f"{what} is forbidden: {why}", _details(group, resource, name))


def unauthorized(message: str = "Unauthorized") -> ApiError:
    return ApiError(401, "Unauthorized", message)


def method_not_allowed(method: str, what: str) -> ApiError:
    return ApiError(405, "MethodNotAllowed", f"{method} is not supported on {what}" if what
                    else "the server does not allow this method on the requested resource")


def expired(message: str, meta: dict | None = None) -> ApiError:
    return ApiError(410, "Expired", message, meta=meta)


def gone(message: str) -> ApiError:
    return ApiError(410, "Gone", message)


def too_large_rv(rv: int, current: int) -> ApiError:
    return ApiError(504, "Timeout", f"Timeout: Too large resource version: {rv}, current: {current}",
                    {"causes": [{"reason": "ResourceVersionTooLarge",
                                 "message": "Too large resource version"}],
                     "retryAfterSeconds": 1})


def unsupported_media_type(content_type: str) -> ApiError:
    return ApiError(415, "UnsupportedMediaType",
                    f'the body of the request was in an unknown format - accepted media types '
                    f'include: application/json, application/yaml, application/json-patch+json, '
                    f'application/merge-patch+json, application/strategic-merge-patch+json, '
                    f'application/apply-patch+yaml (got "{content_type}")')


def not_acceptable(accept: str) -> ApiError:
    return ApiError(406, "NotAcceptable",
                    "only the following media types are accepted: application/json, "
                    "application/yaml, application/json;as=Table;v=v1;g=meta.k8s.io")


def internal(message: str) -> ApiError:
    return ApiError(500, "InternalError",
                    f"Internal error occurred: {message}",
                    {"causes": [{"message": message}]})


def service_unavailable(message: str) -> ApiError:
    return ApiError(503, "ServiceUnavailable", message)


def timeout(message: str) -> ApiError:
    return ApiError(504, "Timeout", f"Timeout: {message}")


def not_acceptable_message(message: str) -> ApiError:
    return ApiError(406, "NotAcceptable", message)
