"""Topology YAML -> Topology, with every problem reported as "FILE:LINE: problem".

The YAML is composed into a node tree with yaml.SafeLoader (so each value keeps its line) and
walked by hand; scalars are built by the same SafeLoader constructors (str, int, float, bool,
null, !!binary -> bytes). Validation does not stop at the first problem: all problems found are
reported together, sorted by line. Nothing here touches the network or the listed TLS files.
See docs/topology.md for the format.
"""
from __future__ import annotations

import re

import yaml

from .keys import BUILTIN_GROUPS, DNS_LABEL, storage_path
from .model import (CustomResourceRule, IndexSpec, NamespaceRule, PrefixRule, RegexpRule, Rule, ShardSpec,
                    TLSSpec, Topology, unreachable)


class TopologyError(ValueError):
    """A refused topology. str() is one "FILE:LINE: problem" per line; `.problems` lists them."""

    def __init__(self, problems: list[str] | str):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


SHARD_NAME = re.compile(r"[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?\Z")  # a path and NATS token
HOST = r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?)"
ENDPOINT = re.compile(rf"grpc://(?P<host>{HOST}):(?P<port>[0-9]{{1,5}})\Z")
DURATION = re.compile(r"(?:(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:ns|us|µs|ms|s|m|h))+\Z")
_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
GROUP = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)+\Z")
PLURAL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")

MATCHERS = ("prefix", "regexp", "namespace", "customresource")
TOP_KEYS = ("shards", "rules", "default")
SHARD_KEYS = ("name", "endpoint", "tls", "compaction")
TLS_KEYS = ("ca_file", "cert_file", "key_file", "server_name")
COMPACTION_KEYS = ("interval", "retention")
RULE_KEYS = MATCHERS + ("resources", "shard", "index")
INDEX_KEYS = ("labels", "fields")
# a declared field path: dot-separated JSON member names (as the Query API accepts them)
FIELD_PATH = re.compile(r"[A-Za-z0-9_$-]+(\.[A-Za-z0-9_$-]+)*\Z")
MAX_INDEX_FIELDS = 16
CR_KEYS = ("group", "resource")
_BAD = object()  # a value already reported as a problem


def load_topology(path: str) -> Topology:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as err:
        raise TopologyError(f"{path}: cannot read: {err.strerror or err}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise TopologyError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    return parse_topology(text, path)


def parse_topology(text: str, source: str = "<topology>") -> Topology:
    loader = yaml.SafeLoader(text)
    try:
        try:
            root = loader.get_single_node()
        except yaml.MarkedYAMLError as err:
            mark = err.problem_mark or err.context_mark
            where = f"{source}:{mark.line + 1}" if mark else source
            raise TopologyError(f"{where}: invalid YAML: {err.problem or err}") from None
        except yaml.YAMLError as err:
            raise TopologyError(f"{source}: invalid YAML: {err}") from None
        return _Parser(source, loader).topology(root)
    finally:
        loader.dispose()


def line_of(node) -> int:
    return node.start_mark.line + 1


def seconds(text: str) -> float:
    """Go-style duration ("1h30m", "500ms") to seconds; the caller has matched DURATION."""
    return sum(float(n) * _UNIT[u] for n, u in re.findall(r"([0-9.]+)(ns|us|µs|ms|s|m|h)", text))


class _Parser:
    def __init__(self, source: str, loader: yaml.SafeLoader):
        self.source, self.loader = source, loader
        self.problems: list[tuple[int, str]] = []
        self.warnings: list[tuple[int, str]] = []

    def err(self, where, message: str):
        line = where if isinstance(where, int) else line_of(where)
        self.problems.append((line, message))
        return _BAD

    # -- generic node helpers ---------------------------------------------------------------
    def value(self, node, what: str):
        if not isinstance(node, yaml.ScalarNode):
            return self.err(node, f"{what} must be a single value, not a "
                                  f"{'list' if isinstance(node, yaml.SequenceNode) else 'mapping'}")
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.YAMLError as e:
            return self.err(node, f"{what}: {getattr(e, 'problem', None) or e}")

    def string(self, node, what: str, allow_bytes: bool = False):
        v = self.value(node, what)
        if v is _BAD or isinstance(v, str) or (allow_bytes and isinstance(v, bytes)):
            return v
        return self.err(node, f"{what} must be a string, not {_kind(v)}")

    def mapping(self, node, what: str, allowed: tuple[str, ...]) -> dict | None:
        """{key: (key node, value node)}; reports non-mappings, unknown and duplicate keys."""
        if not isinstance(node, yaml.MappingNode):
            self.err(node, f"{what} must be a mapping of {', '.join(allowed)}")
            return None
        out: dict[str, tuple] = {}
        for knode, vnode in node.value:
            key = knode.value if isinstance(knode, yaml.ScalarNode) else None
            if key not in allowed:
                self.err(knode, f"unknown key {key!r} in {what} (expected {', '.join(allowed)})")
            elif key in out:
                self.err(knode, f"duplicate key {key!r} in {what} "
                                f"(first at line {line_of(out[key][0])})")
            else:
                out[key] = (knode, vnode)
        return out

    def sequence(self, node, what: str) -> list:
        if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null":
            return []
        if not isinstance(node, yaml.SequenceNode):
            self.err(node, f"{what} must be a list")
            return []
        return list(node.value)

    # -- the document -------------------------------------------------------------------------
    def topology(self, root) -> Topology:
        if root is None:
            raise TopologyError(f"{self.source}:1: empty topology: it needs shards "
                                f"(and rules, default)")
        top = self.mapping(root, "the topology", TOP_KEYS)
        if top is None:
            self._raise()
        shards: dict[str, ShardSpec] = {}
        n_shards = 0  # shard entries in the file, valid or not
        seen: dict[str, int] = {}  # name -> line, also of shards with other problems
        if "shards" not in top:
            self.err(root, "no shards: the topology needs a 'shards:' list")
        else:
            snode = top["shards"][1]
            items = self.sequence(snode, "shards")
            n_shards = len(items)
            if not items and (isinstance(snode, yaml.SequenceNode)
                              or snode.tag == "tag:yaml.org,2002:null"):
                self.err(top["shards"][0], "no shards: list at least one")
            embedded: ShardSpec | None = None
            for item in items:
                name, spec = self.shard(item)
                if name in seen:
                    self.err(item, f"duplicate shard name {name!r} (first at line {seen[name]})")
                    continue
                if name is not None:
                    seen[name] = line_of(item)
                if spec is None:
                    continue
                if spec.embedded:
                    if embedded is not None:
                        self.err(item, f"more than one embedded shard: {embedded.name!r} "
                                       f"(line {embedded.line}) is already embedded")
                        continue
                    embedded = spec
                shards[spec.name] = spec
        rules = []
        names = list(seen) if "shards" in top else []  # incl. shards with other problems
        if "rules" in top:
            for item in self.sequence(top["rules"][1], "rules"):
                rule = self.rule(item, names)
                if rule is not None:
                    rules.append(rule)
        default, default_line = self.default(top, root, shards, names, n_shards)
        self._raise()
        for rule, by in unreachable(rules):
            self.warnings.append((rule.line, f"warning: {rule.describe()} is unreachable: every "
                                  f"key it can match is matched first by "
                                  f"{'; '.join(r.describe() for r in by)}"))
        return Topology(shards=shards, rules=tuple(rules), default=default, source=self.source,
                        warnings=tuple(f"{self.source}:{n}: {m}" for n, m in
                                       sorted(self.warnings, key=lambda w: w[0])),
                        default_line=default_line)

    def _raise(self):
        if self.problems:
            raise TopologyError([f"{self.source}:{n}: {m}" for n, m in
                                 sorted(self.problems, key=lambda p: p[0])])

    def default(self, top: dict, root, shards: dict, names: list[str],
                n_shards: int) -> tuple[str, int]:
        if "default" not in top:
            if n_shards == 1 and len(shards) == 1:
                return next(iter(shards)), 0
            if n_shards > 1:
                self.err(root, f"no default: add 'default: SHARD' naming the shard for keys no "
                               f"rule matches (one of {', '.join(shards)})")
            return "", 0
        node = top["default"][1]
        name = self.string(node, "default")
        if isinstance(name, str) and names and name not in names:
            self.err(node, f"default: unknown shard {name!r} (shards: {', '.join(names)})")
        return (name if isinstance(name, str) else ""), line_of(node)

    # -- shards -------------------------------------------------------------------------------
    def shard(self, node) -> tuple[str | None, ShardSpec | None]:
        """(the name if readable, the spec if valid)."""
        m = self.mapping(node, "shard", SHARD_KEYS)
        if m is None:
            return None, None
        ok = True
        name = endpoint = None
        if "name" not in m:
            ok = not self.err(node, "shard without a name")
        else:
            name = self.string(m["name"][1], "shard name")
            if isinstance(name, str) and not SHARD_NAME.match(name):
                name = self.err(m["name"][1], f"bad shard name {name!r}: use lowercase letters, "
                                              f"digits, '-' and '_' (at most 63)")
            ok = ok and isinstance(name, str)
        if "endpoint" not in m:
            ok = not self.err(node, f"shard {name or ''!r} has no endpoint "
                                    f"('embedded' or grpc://HOST:PORT)")
        else:
            endpoint = self.endpoint(m["endpoint"][1])
            ok = ok and isinstance(endpoint, str)
        tls = self.tls(m["tls"][1], endpoint) if "tls" in m else None
        interval = retention = None
        if "compaction" in m:
            interval, retention = self.compaction(m["compaction"][1])
        name = name if isinstance(name, str) else None
        if not ok or tls is _BAD or interval is _BAD or retention is _BAD:
            return name, None
        return name, ShardSpec(name=name, endpoint=endpoint, tls=tls, compaction_interval=interval,
                         compaction_retention=retention, line=line_of(node))

    def endpoint(self, node):
        text = self.string(node, "endpoint")
        if text is _BAD or text == "embedded":
            return text
        parts = [p.strip() for p in text.split(",")]
        for p in parts:
            m = ENDPOINT.match(p)
            if m is None:
                return self.err(node, f"bad endpoint {p!r}: use 'embedded' or "
                                      f"grpc://HOST:PORT[,grpc://HOST:PORT...]")
            if not 1 <= int(m["port"]) <= 65535:
                return self.err(node, f"bad endpoint {p!r}: port must be 1-65535")
        if len(set(parts)) != len(parts):
            return self.err(node, f"endpoint {text!r} lists an address twice")
        return ",".join(parts)

    def tls(self, node, endpoint):
        m = self.mapping(node, "tls", TLS_KEYS)
        if m is None:
            return _BAD
        values = {}
        for key, (_, vnode) in m.items():
            v = self.string(vnode, f"tls {key}")
            if v is _BAD:
                return _BAD
            values[key] = v
        if ("cert_file" in values) != ("key_file" in values):
            return self.err(node, "tls: cert_file and key_file go together (a client certificate)")
        if endpoint == "embedded":
            return self.err(node, "tls on an embedded shard: it is in the router's own process")
        return TLSSpec(**values)

    def compaction(self, node):
        m = self.mapping(node, "compaction", COMPACTION_KEYS)
        if m is None:
            return _BAD, _BAD
        interval = retention = None
        if "interval" in m:
            vnode = m["interval"][1]
            v = self.value(vnode, "compaction interval")
            if isinstance(v, str) and DURATION.match(v):
                v = seconds(v)
            if v is not _BAD and (isinstance(v, bool) or not isinstance(v, int | float) or v <= 0):
                v = self.err(vnode, f"bad compaction interval {v!r}: a positive duration like "
                                    f"30s, 5m, 1h30m (a bare number is seconds)")
            interval = v if v is _BAD else float(v)
        if "retention" in m:
            vnode = m["retention"][1]
            v = self.value(vnode, "compaction retention")
            if isinstance(v, int) and not isinstance(v, bool) and v >= 0:
                v = str(v)
            elif not (isinstance(v, str) and (v.isdigit() or DURATION.match(v))) and v is not _BAD:
                v = self.err(vnode, f"bad compaction retention {v!r}: as etcd's "
                                    f"--auto-compaction-retention, e.g. 1h or 10000")
            retention = v
        return interval, retention

    # -- rules --------------------------------------------------------------------------------
    def rule(self, node, shards: list[str]) -> Rule | None:
        """The rule, or None after reporting its problems. `shards`: every named shard."""
        m = self.mapping(node, "rule", RULE_KEYS)
        if m is None:
            return None
        found = [k for k in MATCHERS if k in m]
        if not found:
            return self.err(node, "a rule needs one matcher: prefix, regexp, namespace or "
                                  "customresource") and None
        if len(found) > 1:
            return self.err(m[found[1]][0], f"a rule has one matcher, this one has "
                                            f"{' and '.join(found)}") and None
        if "resources" in m and found[0] != "namespace":
            return self.err(m["resources"][0], "resources: only goes with a namespace "
                                               "matcher") and None
        shard = _BAD
        if "shard" not in m:
            self.err(node, "rule without a shard: add 'shard: NAME'")
        else:
            shard = self.string(m["shard"][1], "shard")
            if isinstance(shard, str) and shard not in shards:
                shard = self.err(m["shard"][1], f"unknown shard {shard!r} "
                                                f"(shards: {', '.join(shards) or 'none'})")
        kind = found[0]
        knode, vnode = m[kind]
        args = getattr(self, "m_" + kind)(vnode, m)
        index = self.index(m["index"][1]) if "index" in m else None
        if args is _BAD or shard is _BAD or index is _BAD:
            return None
        cls = {"prefix": PrefixRule, "regexp": RegexpRule, "namespace": NamespaceRule,
               "customresource": CustomResourceRule}[kind]
        rule = cls(shard=shard, line=line_of(node), index=index, **args)
        if index is not None and kind == "regexp" and not rule.bounds()[1]:
            return self.err(m["index"][0], (
                "index: on a regexp rule needs a literal prefix followed by .* (like "
                "'/registry/pods/team-a/.*'): for other patterns no query range can be shown "
                "to be covered")) and None
        return rule

    def index(self, node):
        """`index: {labels: true, fields: [spec.customer, status.phase]}` (both optional)."""
        m = self.mapping(node, "index", INDEX_KEYS)
        if m is None:
            return _BAD
        labels = False
        if "labels" in m:
            labels = self.value(m["labels"][1], "index labels")
            if labels is not _BAD and not isinstance(labels, bool):
                labels = self.err(m["labels"][1], f"index labels must be true or false, not "
                                                  f"{_kind(labels)}")
        fields: list[str] = []
        if "fields" in m:
            items = self.sequence(m["fields"][1], "index fields")
            for item in items:
                path = self.string(item, "index field")
                if path is _BAD:
                    return _BAD
                if not FIELD_PATH.match(path) or len(path) > 256:
                    return self.err(item, f"bad index field {path!r}: a dot-separated path into "
                                          f"the object, like spec.customer or status.phase")
                if path in ("metadata.name", "metadata.namespace"):
                    self.warnings.append((line_of(item), f"warning: index field {path} is "
                                          f"always indexed; listing it changes nothing"))
                    continue
                if path in fields:
                    return self.err(item, f"index field {path} is listed twice")
                fields.append(path)
            if len(fields) > MAX_INDEX_FIELDS:
                return self.err(m["fields"][1], f"index fields: at most {MAX_INDEX_FIELDS} paths "
                                                f"per rule, got {len(fields)}")
        if labels is _BAD:
            return _BAD
        return IndexSpec(labels=labels, fields=tuple(sorted(fields)))

    def _bytes(self, node, what: str):
        v = self.string(node, what, allow_bytes=True)
        if v is _BAD:
            return v
        if isinstance(v, str):
            high = sorted({ch for ch in v if "\x80" <= ch <= "\xff"})
            if high:
                self.warnings.append((line_of(node), (
                    f"warning: {what} contains {', '.join(f'U+{ord(c):04X}' for c in high)}, "
                    f"which stands for its UTF-8 bytes; for raw bytes use !!binary (prefix) or "
                    f"a single-quoted \\xNN (regexp)")))
            v = v.encode("utf-8")
        return v

    def m_prefix(self, node, _m):
        v = self._bytes(node, "prefix")
        if v == b"":
            return self.err(node, "empty prefix: it would match every key (use default:)")
        return v if v is _BAD else {"prefix": v}

    def m_regexp(self, node, _m):
        v = self._bytes(node, "regexp")
        if v is _BAD:
            return v
        if v == b"":
            return self.err(node, "empty regexp: it only matches the empty key")
        try:
            re.compile(v, re.DOTALL)
        except re.error as e:
            return self.err(node, f"bad regexp {v.decode('utf-8', 'replace')!r}: {e}")
        return {"pattern": v}

    def m_namespace(self, node, m):
        ns = self.string(node, "namespace")
        if isinstance(ns, str) and (len(ns) > 63 or not DNS_LABEL.match(ns)):
            ns = self.err(node, f"bad namespace {ns!r}: a DNS label (lowercase letters, digits, "
                                f"'-', at most 63)")
        resources = None
        if "resources" in m:
            rnode = m["resources"][1]
            items = self.sequence(rnode, "resources")
            if not items and isinstance(rnode, yaml.SequenceNode):
                return self.err(rnode, "resources: empty list (omit it for all resources)")
            resources = []
            for item in items:
                r = self.string(item, "resource")
                if isinstance(r, str):
                    _, problem = storage_path(r)
                    if problem:
                        r = self.err(item, problem)
                resources.append(r)
            if _BAD in resources or not items:
                return _BAD
            resources = tuple(resources)
        return _BAD if ns is _BAD else {"namespace": ns, "resources": resources}

    def m_customresource(self, node, _m):
        m = self.mapping(node, "customresource", CR_KEYS)
        if m is None:
            return _BAD
        if "group" not in m:
            return self.err(node, "customresource needs a group (like example.com)")
        group = self.string(m["group"][1], "customresource group")
        if isinstance(group, str):
            if group in BUILTIN_GROUPS:
                group = self.err(m["group"][1], (
                    f"group {group!r} is built in: its objects are stored under "
                    f"/registry/<resource>/ without the group; use a prefix or namespace rule"))
            elif not GROUP.match(group):
                group = self.err(m["group"][1], f"bad group {group!r}: an API group of a custom "
                                                f"resource has a dot (like example.com)")
        resource = None
        if "resource" in m:
            resource = self.string(m["resource"][1], "customresource resource")
            if isinstance(resource, str) and not PLURAL.match(resource):
                resource = self.err(m["resource"][1], f"bad resource {resource!r}: the plural "
                                                      f"name, like widgets")
        if group is _BAD or resource is _BAD:
            return _BAD
        return {"group": group, "resource": resource}


def _kind(v) -> str:
    return {type(None): "empty", bool: "a boolean", int: "a number", float: "a number",
            bytes: "binary", list: "a list", dict: "a mapping"}.get(type(v), type(v).__name__)
