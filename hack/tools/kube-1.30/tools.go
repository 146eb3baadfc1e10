//go:build tools

// Package tools pins the Kubernetes 1.30 control-plane binaries that make test-compat runs.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
)
