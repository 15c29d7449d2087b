//go:build tools

// Package tools pins etcdutl of the same etcd release as ../shared/tools/etcd (v3.7.3): the
// snapshot tests restore KubeFabric's Maintenance.Snapshot with it into a real etcd.
package tools

import (
	_ "go.etcd.io/etcd/etcdutl/v3"
)
