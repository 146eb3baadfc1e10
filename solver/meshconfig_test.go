package solver

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/istio-acme/istio-acme-issuer/internal/istiomodel"
	"github.com/istio-acme/istio-acme-issuer/internal/testenv"
)

// istiod's mesh configuration as the controller reads it from a real API
// server: the ConfigMap istiod reads, its defaults without one, and an
// error naming the ConfigMap and its key when istiod could not read it
// either.
func TestMeshSettings(t *testing.T) {
	api := testenv.StartAPIServer(t)
	api.CreateNamespaces(t, "istio-system")
	ctx := context.Background()
	key := client.ObjectKey{Namespace: "istio-system", Name: "istio"}
	read := func(scoped bool) (m meshResult) {
		s := &MeshSettings{Reader: api.Client, ConfigMap: key, ScopeGatewayToNamespace: scoped}
		m.mesh, m.err = s.Mesh(ctx)
		return m
	}

	if m := read(true); m.err != nil || len(m.mesh.DefaultVirtualServiceExportTo) != 0 || !m.mesh.ScopeGatewayToNamespace {
		t.Errorf("without the ConfigMap: %+v, %v; want istiod's default exportTo and the scoping flag", m.mesh, m.err)
	}

	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}, Data: map[string]string{
		"mesh":         "accessLogFile: /dev/stdout\ndefaultVirtualServiceExportTo:\n- \".\"\ndefaultConfig:\n  discoveryAddress: istiod.istio-system.svc:15012\n",
		"meshNetworks": "networks: {}",
	}}
	if err := api.Client.Create(ctx, cm); err != nil {
		t.Fatal(err)
	}
	if m := read(false); m.err != nil || !slices.Equal(m.mesh.DefaultVirtualServiceExportTo, []string{"."}) || m.mesh.ScopeGatewayToNamespace {
		t.Errorf("with defaultVirtualServiceExportTo [.]: %+v, %v", m.mesh, m.err)
	}

	cm.Data["mesh"] = "defaultVirtualServiceExportTo: [\".\"\n"
	if err := api.Client.Update(ctx, cm); err != nil {
		t.Fatal(err)
	}
	m := read(false)
	if m.err == nil {
		t.Fatalf("read %+v from a mesh configuration that is not YAML", m.mesh)
	}
	for _, want := range []string{"ConfigMap istio-system/istio key mesh", "fix the YAML"} {
		if !strings.Contains(m.err.Error(), want) {
			t.Errorf("error %q does not say %q", m.err, want)
		}
	}

	// Read once per discovery's lifetime, not once per plan.
	s := &MeshSettings{Reader: api.Client, ConfigMap: key}
	first, _ := s.Mesh(ctx)
	cm.Data["mesh"] = "defaultVirtualServiceExportTo: [\"*\"]\n"
	if err := api.Client.Update(ctx, cm); err != nil {
		t.Fatal(err)
	}
	if again, _ := s.Mesh(ctx); !slices.Equal(again.DefaultVirtualServiceExportTo, first.DefaultVirtualServiceExportTo) {
		t.Errorf("read the ConfigMap again within %s", discoveryTTL)
	}
	s.last.at = time.Now().Add(-discoveryTTL)
	if again, err := s.Mesh(ctx); err != nil || !slices.Equal(again.DefaultVirtualServiceExportTo, []string{"*"}) {
		t.Errorf("after %s: %+v, %v; want the changed ConfigMap", discoveryTTL, again, err)
	}
}

type meshResult struct {
	mesh istiomodel.Mesh
	err  error
}
