"""`kubefabric migrate`: import an etcd snapshot file (or copy a live etcd) into KubeFabric, keeping every key's
revisions, versions and leases (the way from etcd to KubeFabric; Maintenance.Snapshot is the
way back). Runs offline: nothing may serve the target shards meanwhile (the import takes each
shard's leader lease, so a running server makes it fail rather than mix histories)."""
from __future__ import annotations

import argparse
import logging

from kubefabric.config import URLs, Flag, add_command
from kubefabric.rpc import startup

log = logging.getLogger("kubefabric.migrate")

DESCRIPTION = """\
Import an etcd snapshot (`etcdctl snapshot save FILE`, or a member's member/snap/db) into an
empty KubeFabric store: the embedded SQLite shard in --data-dir (what `kubefabric serve` then
serves), or every shard of a --topology, each key on the shard its rules pick.

Everything the snapshot holds is imported: the whole history above its compaction point and
each key's latest version at or below it, with their create and mod revisions (Kubernetes
resourceVersions), versions and leases, plus the leases and the auth store (users, roles,
enabled flag). Every shard's clock ends at the snapshot's revision, so the next write gets
revision + 1, and reads below the compaction point are refused as etcd refuses them. Watches
from any resourceVersion above the compaction point resume.

The file is checked first: the SHA-256 etcd appends, bbolt's meta pages and etcd's buckets; a
truncated, corrupt or foreign file is refused with one line, nothing written. The target must be
empty (a fresh --data-dir, fresh databases). Stop every server of the target while it runs.

With --from-etcd URL instead of a file it copies a live etcd: its keys at etcd's compaction
point and every later change (the same history a snapshot holds), then it follows etcd's watch
and imports each change as it happens. To switch over: stop the writers (kube-apiserver), wait
for "caught up", press Ctrl-C (or send SIGTERM): it imports etcd's changes up to etcd's
revision at that moment, sets the clocks there and exits; then start KubeFabric and point the
writers at it. Leases are copied at the end; users and roles are not (etcd does not serve
password hashes: take a snapshot file for those).

Every flag can also be set as KUBEFABRIC_<FLAG_NAME>, e.g. KUBEFABRIC_DATA_DIR.

  etcdctl --endpoints=http://etcd:2379 snapshot save etcd.db
  kubefabric migrate etcd.db --data-dir /var/lib/kubefabric
  kubefabric serve --data-dir /var/lib/kubefabric

  kubefabric migrate --from-etcd http://etcd:2379 --data-dir /var/lib/kubefabric   # Ctrl-C to finish
  kubefabric migrate --from-etcd https://10.0.0.5:2379 --from-etcd-ca-file ca.crt \\
      --from-etcd-cert-file apiserver-etcd-client.crt --from-etcd-key-file apiserver-etcd-client.key

  kubefabric migrate etcd.db --topology topology.yaml --data-dir /var/lib/kubefabric \\
      --shard-dsn tenants=postgres://kf:pw@pg:5432/tenants,events=mysql://kf:pw@db:3306/events
"""

FLAGS = [
    Flag("--from-etcd", "", "copy a live etcd instead of a file: http(s)://host:port[,...]; "
         "its history, then every change as it happens until stopped (Ctrl-C / SIGTERM)",
         type=URLs(("http", "https"), optional=True)),
    Flag("--from-etcd-ca-file", "", "CA certificate(s) (PEM) that verify the --from-etcd "
         "server's certificate (https:// URLs; default: the system's trust roots)"),
    Flag("--from-etcd-cert-file", "", "client certificate (PEM) presented to --from-etcd (an "
         "etcd with --client-cert-auth, as kube-apiserver's etcd usually is)"),
    Flag("--from-etcd-key-file", "", "unencrypted private key (PEM) of --from-etcd-cert-file"),
    Flag("--data-dir", "kubefabric-data",
         "directory of the embedded SQLite shard (with --topology: the parent of each embedded "
         "shard's directory, as `kubefabric serve --topology` uses it); created if missing"),
    Flag("--topology", "", "import into the shards of this topology file, each key where the "
         "rules route it (embedded shards under --data-dir, the others through --shard-dsn)"),
    Flag("--shard-dsn", "", "with --topology: NAME=DSN[,NAME=DSN...], the database of each "
         "shard that is not embedded (what its backend-pg/-mysql/-sqlite service is started with)"),
    *startup.process_flags(None, otlp=False),  # no spans: a one-off copy
]


def command(subparsers) -> None:
    p = add_command(subparsers, "migrate", "import an etcd snapshot file, keeping revisions and leases",
                    DESCRIPTION, FLAGS, startup.runner(_start, log))
    p.add_argument("snapshot", metavar="SNAPSHOT_FILE", nargs="?", default="",
                   help="an etcd snapshot: `etcdctl snapshot save` output or member/snap/db "
                        "(or --from-etcd)")


def _start(args: argparse.Namespace):
    from .migrate_run import main  # the stores and the shard core load now (kubefabric.cli)
    return main(args)
