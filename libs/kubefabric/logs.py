"""Log setup shared by every service: text for people, json for log pipelines."""
from __future__ import annotations

import json
import logging
import sys


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"), "level": record.levelname.lower(),
               "logger": record.name, "msg": record.getMessage()}
        if record.exc_info:
            out["error"] = self.formatException(record.exc_info)
        return json.dumps(out)


def causes(exc: BaseException, limit: int = 3) -> str:
    """An exception and what it was raised from, on one line, for a log line that replaces a
    traceback: "outer (from: inner; from: root)". Each message's first line only."""
    parts: list[str] = []
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen and len(parts) < limit:
        seen.add(id(exc))
        text = (str(exc).strip().splitlines() or [""])[0] or type(exc).__name__
        if not parts or text not in parts[-1]:
            parts.append(text)
        exc = exc.__cause__ or exc.__context__
    return parts[0] + "".join(f" (from: {p})" for p in parts[1:]) if parts else ""


def setup_logging(fmt: str = "text", level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
