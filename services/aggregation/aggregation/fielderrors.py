"""Field errors worded as apimachinery's field.Error (`spec.x: Invalid value: 3: detail`), and
the 422 Invalid status they add up to."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from . import status
from .jsonpath import format_float

_OMIT = object()
_TYPES = {  # error type -> (text, StatusCause reason)
    "Required": ("Required value", "FieldValueRequired"),
    "Forbidden": ("Forbidden", "FieldValueForbidden"),
    "TooLong": ("Too long", "FieldValueTooLong"),
    "TooMany": ("Too many", "FieldValueTooMany"),
    "Invalid": ("Invalid value", "FieldValueInvalid"),
    "TypeInvalid": ("Invalid value", "FieldValueTypeInvalid"),
    "NotSupported": ("Unsupported value", "FieldValueNotSupported"),
    "Duplicate": ("Duplicate value", "FieldValueDuplicate"),
    "NotFound": ("Not found", "FieldValueNotFound"),
}


def go_value(value: Any) -> str:
    """A bad value as Go's %v / %q / json.Marshal print it in field errors."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return format_float(value)
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


@dataclass(frozen=True)
class FieldError:
    kind: str            # a key of _TYPES
    field: str
    value: Any = _OMIT
    detail: str = ""

    def body(self) -> str:
        text = _TYPES[self.kind][0]
        if self.kind in ("Invalid", "TypeInvalid", "NotSupported", "Duplicate", "NotFound",
                         "TooMany") and self.value is not _OMIT:
            text = f"{text}: {go_value(self.value)}"
        if self.detail:
            text = f"{text}: {self.detail}"
        return text

    def __str__(self) -> str:
        return f"{self.field}: {self.body()}" if self.field else self.body()

    def cause(self) -> dict:
        return {"reason": _TYPES[self.kind][1], "message": self.body(), "field": self.field}


def required(field: str, detail: str = "") -> FieldError:
    return FieldError("Required", field, detail=detail)


def forbidden(field: str, detail: str) -> FieldError:
    return FieldError("Forbidden", field, detail=detail)


def invalid(field: str, value: Any, detail: str) -> FieldError:
    return FieldError("Invalid", field, value, detail)


def not_supported(field: str, value: Any, allowed: list[str]) -> FieldError:
    quoted = ", ".join(json.dumps(a) for a in allowed)
    return FieldError("NotSupported", field, value, f"supported values: {quoted}" if allowed else "")


def too_long(field: str, limit: int) -> FieldError:
    return FieldError("TooLong", field, detail=f"may not be more than {limit} "
                      f"{'byte' if limit == 1 else 'bytes'}")


def too_many(field: str, actual: int, limit: int) -> FieldError:
    return FieldError("TooMany", field, actual, f"must have at most {limit} "
                      f"{'item' if limit == 1 else 'items'}")


def duplicate(field: str, value: Any) -> FieldError:
    return FieldError("Duplicate", field, value)


def to_status(group: str, kind: str, name: str, errors: list[FieldError]) -> status.ApiError:
    """kube-apiserver's NewInvalid: `Kind.group "name" is invalid: <errors>`."""
    texts = list(dict.fromkeys(str(e) for e in errors))  # the message lists each error once
    joined = texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"
    qualified = f"{kind}.{group}" if group else kind
    details = {"name": name} if name else {}
    details.update({"group": group, "kind": kind, "causes": [e.cause() for e in errors]})
    return status.ApiError(422, "Invalid", f'{qualified} "{name}" is invalid: {joined}', details)


def options_invalid(kind: str, errors: list[FieldError]) -> status.ApiError:
    """A request's options (ListOptions, CreateOptions, ...) refused: 422 on meta.k8s.io."""
    texts = list(dict.fromkeys(str(e) for e in errors))
    joined = texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"
    return status.ApiError(422, "Invalid", f'{kind}.meta.k8s.io "" is invalid: {joined}',
                           {"group": "meta.k8s.io", "kind": kind,
                            "causes": [e.cause() for e in errors]})
