package testenv

import (
	"context"
	"testing"
	"time"

	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

// NewManager returns a controller manager for the API server with the cache
// options, no metrics server, and controller names that may repeat (each
// test runs its own controllers in the test process).
func NewManager(t testing.TB, api *APIServer, cacheOptions cache.Options) manager.Manager {
	t.Helper()
	mgr, err := ctrl.NewManager(api.Config, ctrl.Options{
		Scheme:     api.Env.Scheme,
		Metrics:    metricsserver.Options{BindAddress: "0"},
		Cache:      cacheOptions,
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		t.Fatal(err)
	}
	return mgr
}

// RunManager starts the manager and stops it when the test ends, failing
// the test if it ended with an error.
func RunManager(ctx context.Context, t testing.TB, mgr manager.Manager) {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("manager: %v", err)
		}
	})
}

// WaitFor polls cond until it holds, or fails the test after 30 seconds
// with what it waited for and cond's last state.
func WaitFor(t testing.TB, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %s", what, state)
		}
		time.Sleep(25 * time.Millisecond)
	}
}
