"""The resources this server serves, looked up the ways requests name them."""
from __future__ import annotations

from dataclasses import dataclass

from .crd import Resource, Version, version_priority


@dataclass(frozen=True)
class Served:
    """One resource at one served version: what a request URL addresses."""
    resource: Resource
    version: Version

    @property
    def api_version(self) -> str:
        return self.resource.api_version(self.version.name)


class Registry:
    def __init__(self, resources: list[Resource]):
        self.resources = sorted(resources, key=lambda r: r.name)
        self._by_url: dict[tuple[str, str, str], Served] = {}
        for r in self.resources:
            for v in r.served_versions:
                self._by_url[(r.group, v.name, r.plural)] = Served(r, v)

    def lookup(self, group: str, version: str, plural: str) -> Served | None:
        return self._by_url.get((group, version, plural))

    def by_name(self, name: str) -> Served | None:
        """The resource named <plural>.<group> (its CRD's name) at its preferred served version."""
        for r in self.resources:
            if r.name == name and r.served_versions:
                best = sorted((v.name for v in r.served_versions), key=version_priority)[0]
                return self._by_url[(r.group, best, r.plural)]
        return None

    def groups(self) -> list[str]:
        """Groups with at least one served version, sorted by name."""
        return sorted({r.group for r in self.resources if r.served_versions})

    def group_versions(self, group: str) -> list[str]:
        """A group's served versions, preferred first (Kubernetes' version priority)."""
        names = {v.name for r in self.resources if r.group == group for v in r.served_versions}
        return sorted(names, key=version_priority)

    def served_in(self, group: str, version: str) -> list[Served]:
        return [s for (g, v, _), s in sorted(self._by_url.items()) if g == group and v == version]
