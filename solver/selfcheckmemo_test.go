package solver

import (
	"testing"
	"time"
)

func TestPassMemo(t *testing.T) {
	var m passMemo
	if _, ok := m.recent("a", "plan"); ok {
		t.Fatal("a pass before any was remembered")
	}
	m.remember("a", "plan", "passed")
	if got, ok := m.recent("a", "plan"); !ok || got != "passed" {
		t.Errorf("recent = %q, %v; want the remembered pass", got, ok)
	}
	if _, ok := m.recent("a", "another plan"); ok {
		t.Error("a pass was reused for another plan: the route may be elsewhere now")
	}
	m.memo().Set("old", pass{plan: "plan", result: "passed"}, time.Now().Add(-passMemoTTL-time.Second))
	if _, ok := m.recent("old", "plan"); ok {
		t.Error("a pass older than the TTL was reused")
	}
	m.forget("a")
	if _, ok := m.recent("a", "plan"); ok {
		t.Error("a forgotten pass was reused")
	}
}
