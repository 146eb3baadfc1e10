package shim

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// countingReader counts List calls, the uncached reads of the gateway pods.
type countingReader struct {
	client.Reader
	lists atomic.Int64
	// none answers no pods at all.
	none bool
}

func (c *countingReader) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	c.lists.Add(1)
	if l, ok := list.(*metav1.PartialObjectMetadataList); ok && !c.none {
		l.Items = []metav1.PartialObjectMetadata{{ObjectMeta: metav1.ObjectMeta{Namespace: "istio-system", Name: "gw-0"}}}
	}
	return nil
}

// The pods' namespace of a Gateway is read once for a burst of requests
// (every pass of the signer, every token request asks), not each time.
func TestRequesterRemembersThePodsNamespace(t *testing.T) {
	pods := &countingReader{}
	r := &Requester{Pods: pods}
	gw := gateway(map[string]string{"cert-manager.io/cluster-issuer": "x"})
	for range 5 {
		ns, problem, err := r.podNamespaceOf(context.Background(), gw)
		if err != nil || ns != "istio-system" || problem != "" {
			t.Fatalf("pods' namespace %q, problem %q, %v", ns, problem, err)
		}
	}
	if n := pods.lists.Load(); n != 1 {
		t.Errorf("the pods were listed %d times for 5 questions within the TTL, want once", n)
	}
}

// A Gateway whose pods are not found is remembered with the reason, which
// every answer from memory still gives.
func TestRequesterRemembersWhyNoNamespace(t *testing.T) {
	pods := &countingReader{none: true}
	r := &Requester{Pods: pods}
	gw := gateway(map[string]string{"cert-manager.io/cluster-issuer": "x"})
	for i := range 3 {
		ns, problem, err := r.podNamespaceOf(context.Background(), gw)
		if err != nil || ns != "" || !strings.Contains(problem, "no pod has the Gateway's selector labels") {
			t.Fatalf("question %d: pods' namespace %q, problem %q, %v; want none, with the reason", i, ns, problem, err)
		}
	}
	if n := pods.lists.Load(); n != 1 {
		t.Errorf("the pods were listed %d times, want once", n)
	}
}
