package solver

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/istio-acme/istio-acme-issuer/internal/istiomodel"
)

// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get,namespace=mesh-config

// MeshSettings tells the planner what istiod's own settings change in how
// Gateways and VirtualServices bind. The default exportTo of VirtualServices
// is read from istiod's mesh configuration ConfigMap, which the cluster
// exposes; whether gateways are scoped to their namespace is an environment
// variable of istiod that it does not, so it is the controller's flag.
type MeshSettings struct {
	// Reader gets the ConfigMap, normally uncached: it is read once per
	// discovery of a gateway workload at most.
	Reader client.Reader
	// ConfigMap is istiod's mesh configuration (key "mesh"), such as
	// istio-system/istio; empty reads none and assumes istiod's defaults.
	ConfigMap client.ObjectKey
	// ScopeGatewayToNamespace mirrors istiod's
	// PILOT_SCOPE_GATEWAY_TO_NAMESPACE.
	ScopeGatewayToNamespace bool

	mu   sync.Mutex
	last meshReading
}

type meshReading struct {
	mesh istiomodel.Mesh
	err  error
	at   time.Time
}

// meshKey is the mesh configuration's key in istiod's ConfigMap.
const meshKey = "mesh"

// Mesh returns the settings, reading the ConfigMap at most once per
// discoveryTTL (discoveryErrorTTL after an error). A missing ConfigMap or
// key is istiod's defaults, as istiod reads it.
func (m *MeshSettings) Mesh(ctx context.Context) (istiomodel.Mesh, error) {
	if m == nil {
		return istiomodel.Mesh{}, nil
	}
	m.mu.Lock()
	last := m.last
	m.mu.Unlock()
	if !last.at.IsZero() && (time.Since(last.at) < discoveryErrorTTL || (last.err == nil && time.Since(last.at) < discoveryTTL)) {
		return last.mesh, last.err
	}
	mesh, err := m.read(ctx)
	m.mu.Lock()
	m.last = meshReading{mesh: mesh, err: err, at: time.Now()}
	m.mu.Unlock()
	return mesh, err
}

func (m *MeshSettings) read(ctx context.Context) (istiomodel.Mesh, error) {
	mesh := istiomodel.Mesh{ScopeGatewayToNamespace: m.ScopeGatewayToNamespace}
	if m.ConfigMap.Name == "" {
		return mesh, nil
	}
	var cm corev1.ConfigMap
	err := m.Reader.Get(ctx, m.ConfigMap, &cm)
	switch {
	case apierrors.IsNotFound(err):
		return mesh, nil
	case apierrors.IsForbidden(err):
		return mesh, fmt.Errorf("reading istiod's mesh configuration, ConfigMap %s (--istio-mesh-config): the controller may not get ConfigMaps in %s; grant it (the chart does for istio.meshConfig) or set the flag to \"\" to assume istiod's defaults", m.ConfigMap, m.ConfigMap.Namespace)
	case err != nil:
		return mesh, fmt.Errorf("reading istiod's mesh configuration, ConfigMap %s: %w", m.ConfigMap, err)
	}
	var cfg struct {
		DefaultVirtualServiceExportTo []string `json:"defaultVirtualServiceExportTo"`
	}
	if err := yaml.Unmarshal([]byte(cm.Data[meshKey]), &cfg); err != nil {
		return mesh, fmt.Errorf("ConfigMap %s key %s is not a mesh configuration istiod can read (%v); istiod would not load it either: fix the YAML", m.ConfigMap, meshKey, err)
	}
	mesh.DefaultVirtualServiceExportTo = cfg.DefaultVirtualServiceExportTo
	return mesh, nil
}
