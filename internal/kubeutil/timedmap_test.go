package kubeutil_test

import (
	"testing"
	"time"

	"github.com/istio-acme/istio-acme-issuer/internal/kubeutil"
)

// TestTimedMapDropsWhatOutlivedItsTTL: a stored value is returned with
// its time until deleted, and an entry older than the TTL goes on a later
// Set, once per TTL.
func TestTimedMapDropsWhatOutlivedItsTTL(t *testing.T) {
	m := kubeutil.TimedMap[string, int]{TTL: time.Minute}
	t0 := time.Now()
	m.Set("old", 1, t0)
	if v, at, ok := m.Get("old"); !ok || v != 1 || !at.Equal(t0) {
		t.Fatalf("Get(old) = %v, %v, %v; want 1 at %v", v, at, ok, t0)
	}
	m.Set("young", 2, t0.Add(30*time.Second))
	if _, _, ok := m.Get("old"); !ok {
		t.Fatal("an entry younger than the TTL was dropped")
	}
	m.Set("new", 3, t0.Add(75*time.Second))
	if _, _, ok := m.Get("old"); ok {
		t.Error("an entry older than the TTL is still there after a later Set")
	}
	if v, _, ok := m.Get("young"); !ok || v != 2 {
		t.Errorf("an entry 45 s old was dropped: got %v, %v", v, ok)
	}
	m.Delete("new")
	if _, _, ok := m.Get("new"); ok {
		t.Error("a deleted entry is still there")
	}
}
