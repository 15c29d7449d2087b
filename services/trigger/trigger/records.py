"""The trigger's own records in KubeFabric (DESIGN §8: under /kubefabric/, the default shard).

    /kubefabric/trigger/members/<member>              {"epoch": E}      (leased: alive replicas)
    /kubefabric/trigger/origin/<uid>                  {"revision": R, "initial": bool}
    /kubefabric/trigger/progress/<uid>/<member>       watermark and counters of one replica
    /kubefabric/trigger/dlq/<uid>/<rev:020d>-<hash>   a dead letter (JSON, below)
    /kubefabric/trigger/replay/<uid>/<rev:020d>-<hash> a dead letter asked to be delivered again
    /kubefabric/trigger/status/<uid>                  the trigger's status (also for file triggers)

Invariant (DESIGN §9): a progress record's `revision` W means every event at or below W that
this replica owned was delivered or dead-lettered. A trigger resumes from the lowest W of its
records, so a crash or a hand-over redelivers, never skips.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

ROOT = b"/kubefabric/trigger/"
MEMBERS = ROOT + b"members/"
ORIGIN = ROOT + b"origin/"
PROGRESS = ROOT + b"progress/"
DLQ = ROOT + b"dlq/"
REPLAY = ROOT + b"replay/"
STATUS = ROOT + b"status/"


def member_key(member: str) -> bytes:
    return MEMBERS + member.encode()


def origin_key(uid: str) -> bytes:
    return ORIGIN + uid.encode()


def progress_prefix(uid: str) -> bytes:
    return PROGRESS + uid.encode() + b"/"


def progress_key(uid: str, member: str) -> bytes:
    return progress_prefix(uid) + member.encode()


def letter_name(revision: int, key: bytes) -> bytes:
    return b"%020d-" % revision + hashlib.sha256(key).hexdigest()[:16].encode()


def dlq_prefix(uid: str | None = None) -> bytes:
    return DLQ + (uid.encode() + b"/" if uid else b"")


def replay_prefix(uid: str | None = None) -> bytes:
    return REPLAY + (uid.encode() + b"/" if uid else b"")


def status_key(uid: str) -> bytes:
    return STATUS + uid.encode()


@dataclass
class Progress:
    revision: int = 0
    epoch: int = 0
    delivered: int = 0
    failed: int = 0           # failed attempts
    dead_lettered: int = 0
    filtered_errors: int = 0
    last_error: str = ""
    last_error_time: str = ""
    relists: int = 0
    last_relist: dict = field(default_factory=dict)

    def encode(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def decode(cls, raw: bytes) -> "Progress":
        d = json.loads(raw)
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


@dataclass
class DeadLetter:
    trigger: str              # namespace/name
    uid: str
    id: str                   # the CloudEvent id: <key>@<mod_revision>
    type: str
    key: str
    revision: int
    error: str
    attempts: int
    time: str
    object: dict
    old_object: dict | None

    def encode(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def decode(cls, raw: bytes) -> "DeadLetter":
        d = json.loads(raw)
        return cls(**{k: d.get(k) for k in cls.__dataclass_fields__})
