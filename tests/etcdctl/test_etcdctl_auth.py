"""`etcdctl user|role|auth` against etcd 3.7.3 and KubeFabric (issue 20 point 1): Debian's
etcdctl runs the same commands on both; exit code, stdout and stderr are compared after the
normalisation in harness/etcdctl.py. Passwords are given on the command line (--user name:pw,
`user add name:pw`) or with --new-user-password, as scripts do.
"""
from __future__ import annotations

from test_etcdctl import scenario

ROOT = "--user root:rootpw"
ALICE = "--user alice:pw"


def test_user_and_role_commands(differential):
    def script(ctl, do, record):
        for cmd in ["user add root:rootpw", "user add root:again", "user add alice:pw",
                    "user add certuser --no-password", "user list", "user get alice",
                    "user get nobody", "role add app", "role add app", "role add ops", "role list",
                    "role grant-permission app readwrite /app/ --prefix",
                    "role grant-permission app read /shared",
                    "role grant-permission app write /logs/ /logs0",
                    "role grant-permission app readwrite /from --from-key",
                    "role grant-permission app bogus /x", "role grant-permission nope read /x",
                    "role get app", "role get app -w json", "role get nope",
                    "role revoke-permission app /shared", "role revoke-permission app /shared",
                    "role revoke-permission app /app/ --prefix", "role get app",
                    "user grant-role alice app", "user grant-role alice ops", "user grant-role alice nope",
                    "user grant-role bob app", "user get alice", "user get alice --detail",
                    "user revoke-role alice ops", "user revoke-role alice ops", "role delete ops",
                    "role delete ops", "user passwd alice --interactive=false",
                    "user delete certuser", "user delete certuser", "user list -w json",
                    "auth enable", "user grant-role root root", "auth enable", "auth enable",
                    "user list", f"{ROOT} user list", f"{ALICE} user list",
                    f"{ROOT} role get root", f"{ALICE} role get app", f"{ALICE} user get alice",
                    f"{ROOT} user delete root", f"{ROOT} user revoke-role root root",
                    f"{ROOT} role delete root", "--user root:wrong user list",
                    f"{ROOT} auth disable", "auth disable", "user list"]:
            do(cmd, stdin="newpw\n" if "passwd" in cmd else None)
    scenario(differential, script, reference="etcd37", without=("mariadb", "hub"))  # CI time


def test_kv_with_auth(differential):
    def script(ctl, do, record):
        for cmd in ["user add root:rootpw", "user grant-role root root", "user add alice:pw",
                    "role add app", "role grant-permission app readwrite /app/ --prefix",
                    "role grant-permission app read /shared", "user grant-role alice app",
                    "put /shared s", "put /other o", "auth enable",
                    "put /app/x 1", "get /app/x", f"{ALICE} put /app/x 1", f"{ALICE} get /app/x",
                    f"{ALICE} get /app/ --prefix", f"{ALICE} put /shared 2", f"{ALICE} get /shared",
                    f"{ALICE} get /other", f"{ALICE} del /app/x", f"{ALICE} del /other",
                    f"{ALICE} get '' --from-key", f"{ROOT} get '' --from-key --keys-only",
                    f"{ALICE} compaction 2", f"{ROOT} compaction 2", f"{ALICE} lease grant 60",
                    "endpoint status",
                    f"{ROOT} alarm list", f"{ALICE} alarm disarm", f"{ROOT} defrag",
                    f"{ALICE} defrag", "--user alice:wrong get /app/x", f"{ROOT} auth disable",
                    "get /other"]:
            do(cmd)
    scenario(differential, script, reference="etcd37", without=("mariadb", "hub"))  # CI time
