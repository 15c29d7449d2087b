"""etcd's auth errors as clients receive them (rpctypes): code and exact message."""
from __future__ import annotations

from grpc import StatusCode

from kubefabric.etcd.errors import EtcdError

ROOT_USER_NOT_EXIST = EtcdError(StatusCode.FAILED_PRECONDITION, "etcdserver: root user does not exist")
ROOT_ROLE_NOT_EXIST = EtcdError(StatusCode.FAILED_PRECONDITION,
                                "etcdserver: root user does not have root role")
USER_ALREADY_EXIST = EtcdError(StatusCode.FAILED_PRECONDITION, "etcdserver: user name already exists")
USER_EMPTY = EtcdError(StatusCode.INVALID_ARGUMENT, "etcdserver: user name is empty")
USER_NOT_FOUND = EtcdError(StatusCode.FAILED_PRECONDITION, "etcdserver: user name not found")
ROLE_ALREADY_EXIST = EtcdError(StatusCode.FAILED_PRECONDITION, "etcdserver: role name already exists")
ROLE_NOT_FOUND = EtcdError(StatusCode.FAILED_PRECONDITION, "etcdserver: role name not found")
ROLE_EMPTY = EtcdError(StatusCode.INVALID_ARGUMENT, "etcdserver: role name is empty")
AUTH_FAILED = EtcdError(StatusCode.INVALID_ARGUMENT,
                        "etcdserver: authentication failed, invalid user ID or password")
PERMISSION_NOT_GIVEN = EtcdError(StatusCode.INVALID_ARGUMENT, "etcdserver: permission not given")
PERMISSION_DENIED = EtcdError(StatusCode.PERMISSION_DENIED, "etcdserver: permission denied")
ROLE_NOT_GRANTED = EtcdError(StatusCode.FAILED_PRECONDITION, "etcdserver: role is not granted to the user")
PERMISSION_NOT_GRANTED = EtcdError(StatusCode.FAILED_PRECONDITION,
                                   "etcdserver: permission is not granted to the role")
AUTH_NOT_ENABLED = EtcdError(StatusCode.FAILED_PRECONDITION, "etcdserver: authentication is not enabled")
INVALID_AUTH_TOKEN = EtcdError(StatusCode.UNAUTHENTICATED, "etcdserver: invalid auth token")
INVALID_AUTH_MGMT = EtcdError(StatusCode.INVALID_ARGUMENT, "etcdserver: invalid auth management")
AUTH_OLD_REVISION = EtcdError(StatusCode.INVALID_ARGUMENT, "etcdserver: revision of auth store is old")
# etcd has no gRPC mapping for these two: they reach clients as UNKNOWN with the store's text
NO_PASSWORD_USER = EtcdError(StatusCode.UNKNOWN,
                             "auth: authentication failed, password was given for no password user")
