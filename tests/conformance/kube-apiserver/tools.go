//go:build tools

// Package kubeapiserver pins k8s.io/kubernetes so that build.sh can build a real kube-apiserver
// from Go modules.
package kubeapiserver

import _ "k8s.io/kubernetes/cmd/kube-apiserver"
