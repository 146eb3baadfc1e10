//go:build bench

package e2e

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	cmacme "github.com/cert-manager/cert-manager/pkg/apis/acme/v1"
	toolscache "k8s.io/client-go/tools/cache"

	"github.com/istio-acme/istio-acme-issuer/solver"
)

// standIn stands for cert-manager's HTTP-01 solver Pods at their best: it
// knows every Challenge's key as soon as the Challenge exists (from a
// watch) and answers on port 80 of its own address, to which Pebble's DNS
// resolves the names of the Certificates that use it. No Pod starts, no
// Ingress is routed.
type standIn struct {
	ip       string
	mu       sync.Mutex
	keys     map[string]string // token -> key authorization
	requests int
}

// standInIP is a loopback address outside the test API server's Service
// range, so it is nobody's cluster IP.
const standInIP = "127.94.0.1"

func (c *cluster) startStandIn() *standIn {
	c.t.Helper()
	s := &standIn{ip: standInIP, keys: map[string]string{}}
	inf, err := c.informers.GetInformer(context.Background(), &cmacme.Challenge{})
	if err != nil {
		c.t.Fatal(err)
	}
	learn := func(obj any) {
		if ch, ok := obj.(*cmacme.Challenge); ok && ch.Spec.Token != "" {
			s.mu.Lock()
			s.keys[ch.Spec.Token] = ch.Spec.Key
			s.mu.Unlock()
		}
	}
	if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    learn,
		UpdateFunc: func(_, obj any) { learn(obj) },
	}); err != nil {
		c.t.Fatal(err)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(s.ip, "80"))
	if err != nil {
		c.t.Fatalf("stand-in solver: %v", err)
	}
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			c.t.Errorf("stand-in solver: %v", err)
		}
	}()
	c.t.Cleanup(func() { _ = srv.Close() }) // nothing to drain at test end
	return s
}

func (s *standIn) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	token, ok := strings.CutPrefix(r.URL.Path, solver.ChallengePathPrefix)
	s.mu.Lock()
	key, known := s.keys[token]
	s.requests++
	s.mu.Unlock()
	if !ok || !known {
		http.NotFound(w, r)
		return
	}
	_, _ = w.Write([]byte(key)) // the client's to read or drop
}

// answered counts the requests the stand-in answered (0 for nil).
func (s *standIn) answered() int {
	if s == nil {
		return 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}
