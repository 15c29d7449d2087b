"""Python hooks for what a CRD cannot say: validate/mutate functions and custom subresources,
declared in a Python file beside the CRD manifest (<manifest stem>.py)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class HookError(Exception):
    pass


@dataclass
class Hooks:
    subresources: dict[str, Any] = field(default_factory=dict)


def attach_hooks(resources, crd_dir: str) -> None:
    """Nothing yet: resources keep hooks=None."""
    _ = Path(crd_dir)
