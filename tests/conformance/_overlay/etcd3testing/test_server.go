// KubeFabric conformance harness: replaces k8s.io/apiserver/pkg/storage/etcd3/testing's
// test_server.go at build time (go test -overlay, see ../../run.sh). The storage config it
// returns points at the external server and stores under the client's own namespace, so that
// storages built from the config (factory.Create) and the returned client see the same keys.
package testing

import (
	"strings"
	"testing"

	"go.etcd.io/etcd/client/v3/kubernetes"

	"k8s.io/apiserver/pkg/storage/etcd3/testserver"
	"k8s.io/apiserver/pkg/storage/storagebackend"
)

// EtcdTestServer encapsulates the datastructures needed to start local instance for testing
type EtcdTestServer struct {
	V3Client *kubernetes.Client
}

// Terminate is a no-op: the client and its keys are cleaned up when the test ends.
func (e *EtcdTestServer) Terminate(t testing.TB) {}

// NewUnsecuredEtcd3TestClientServer returns a namespaced client of the external server and a
// storage config whose prefix is that namespace followed by PathPrefix().
func NewUnsecuredEtcd3TestClientServer(t testing.TB) (*EtcdTestServer, *storagebackend.Config) {
	server := &EtcdTestServer{V3Client: testserver.RunEtcd(t, nil)}
	ns := strings.TrimSuffix(testserver.KeyPrefix(server.V3Client), "/")
	config := &storagebackend.Config{
		Type:   "etcd3",
		Prefix: ns + PathPrefix(),
		Transport: storagebackend.TransportConfig{
			ServerList: server.V3Client.Endpoints(),
		},
	}
	return server, config
}
