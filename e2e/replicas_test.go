package e2e

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/istio-acme/istio-acme-issuer/internal/testenv"
)

// replica is one pod of our controller's Deployment: its own process and
// ports, kept across restarts, as a pod keeps its IP.
type replica struct {
	name      string
	tokenPort int
	probeAddr string
	metrics   string

	mu      sync.Mutex
	proc    *testenv.Process
	started time.Time
	killed  bool // the last end was a kill
}

// replicaSet runs several replicas of the controller with leader election,
// behind a token Service that sends each connection to a ready replica, and
// restarts each one that ends, as the kubelet restarts a container.
type replicaSet struct {
	c        *cluster
	replicas []*replica
	lb       *tokenBalancer

	mu sync.Mutex
	// exits are the replicas' ends that were not kills, with the last line
	// each printed (a lost leader election, an API server that was down).
	exits    []string
	stopping bool
	wg       sync.WaitGroup
}

// startReplicas starts n replicas and the token Service's balancer on the
// cluster's token port, and waits until every replica is ready.
func (c *cluster) startReplicas(n int) *replicaSet {
	c.t.Helper()
	rs := &replicaSet{c: c}
	for i := range n {
		r := &replica{
			name:      fmt.Sprintf("istio-acme-issuer-%d", i),
			tokenPort: testenv.FreePort(c.t),
			probeAddr: testenv.Addr(testenv.FreePort(c.t)),
			metrics:   testenv.Addr(testenv.FreePort(c.t)),
		}
		rs.replicas = append(rs.replicas, r)
		rs.start(r)
	}
	rs.lb = startTokenBalancer(c, rs.replicas)
	for _, r := range rs.replicas {
		rs.waitReady(r)
	}
	for _, r := range rs.replicas {
		rs.wg.Go(func() { rs.supervise(r) })
	}
	c.t.Cleanup(func() {
		rs.mu.Lock()
		rs.stopping = true
		rs.mu.Unlock()
		for _, r := range rs.replicas {
			r.mu.Lock()
			p := r.proc
			r.mu.Unlock()
			p.Stop()
		}
		rs.wg.Wait()
	})
	return rs
}

// supervise restarts the replica whenever it ends: after a kill at once, and
// after ending on its own with a back-off that doubles from 1 s to 8 s
// while it keeps ending within 10 s (the kubelet's CrashLoopBackOff, faster).
func (rs *replicaSet) supervise(r *replica) {
	backoff := time.Second
	for {
		r.mu.Lock()
		p, started := r.proc, r.started
		r.mu.Unlock()
		<-p.Done()
		rs.mu.Lock()
		stopping := rs.stopping
		rs.mu.Unlock()
		// A clean exit is a shutdown someone asked for (the test ending).
		if _, err := p.Exited(); stopping || err == nil {
			return
		}
		r.mu.Lock()
		killed := r.killed
		r.killed = false
		r.mu.Unlock()
		wait := time.Duration(0)
		if !killed {
			rs.mu.Lock()
			rs.exits = append(rs.exits, fmt.Sprintf("%s ended after %s: %s", r.name, time.Since(started).Round(time.Millisecond), lastLine(p.Log())))
			rs.mu.Unlock()
			if time.Since(started) < 10*time.Second {
				wait, backoff = backoff, min(2*backoff, 8*time.Second)
			} else {
				backoff = time.Second
			}
		}
		time.Sleep(wait)
		rs.mu.Lock()
		if !rs.stopping {
			rs.start(r)
		}
		rs.mu.Unlock()
	}
}

// Exits returns how the replicas ended on their own.
func (rs *replicaSet) Exits() []string {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return slices.Clone(rs.exits)
}

func lastLine(log string) string {
	lines := strings.Split(strings.TrimSpace(log), "\n")
	return lines[len(lines)-1]
}

func (rs *replicaSet) start(r *replica) {
	c := rs.c
	p := testenv.StartProcess(c.t, r.name, binaries.controller, append(c.controllerArgs(testenv.Addr(r.tokenPort), r.metrics, r.probeAddr), c.moreControllerArgs...))
	r.mu.Lock()
	r.proc, r.started = p, time.Now()
	r.mu.Unlock()
}

// kill ends a replica at once, as a node failure or an OOM kill would; its
// supervisor starts it again.
func (rs *replicaSet) kill(r *replica) {
	r.mu.Lock()
	p := r.proc
	r.killed = true
	r.mu.Unlock()
	p.Kill()
}

func (rs *replicaSet) waitReady(r *replica) {
	rs.c.eventually(r.name+" to be ready", 60*time.Second, func() (bool, string) {
		r.mu.Lock()
		p := r.proc
		r.mu.Unlock()
		if exited, err := p.Exited(); exited {
			rs.c.t.Fatalf("%s exited: %v", r.name, err)
		}
		ok, why := ready(r)
		return ok, why
	})
}

// ready asks a replica's readiness probe.
func ready(r *replica) (bool, string) { return probeReady(r.probeAddr) }

// tokenBalancer stands for the token Service: kube-proxy sends each
// connection to one ready endpoint (readiness polled every 250 ms, as the
// endpoints controller and kube-proxy follow the kubelet's probes), and
// Istio's default retry policy (connect-failure) tries another endpoint
// when a connection to a dead one is refused.
type tokenBalancer struct {
	ln net.Listener

	mu    sync.Mutex
	ready map[*replica]bool
	// refused counts connections no ready endpoint accepted.
	refused int
}

func startTokenBalancer(c *cluster, replicas []*replica) *tokenBalancer {
	ln, err := net.Listen("tcp", testenv.Addr(c.tokenPort))
	if err != nil {
		c.t.Fatal(err)
	}
	b := &tokenBalancer{ln: ln, ready: map[*replica]bool{}}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			for _, r := range replicas {
				ok, _ := ready(r)
				b.mu.Lock()
				b.ready[r] = ok
				b.mu.Unlock()
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	})
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { b.serve(conn) })
		}
	})
	c.t.Cleanup(func() {
		cancel()
		ln.Close()
		wg.Wait()
	})
	return b
}

func (b *tokenBalancer) serve(conn net.Conn) {
	defer conn.Close()
	b.mu.Lock()
	var candidates []*replica
	for r, ok := range b.ready {
		if ok {
			candidates = append(candidates, r)
		}
	}
	b.mu.Unlock()
	rand.Shuffle(len(candidates), func(i, j int) { candidates[i], candidates[j] = candidates[j], candidates[i] })
	for _, r := range candidates {
		up, err := net.DialTimeout("tcp", testenv.Addr(r.tokenPort), time.Second)
		if err != nil {
			continue // connect-failure: retried on another endpoint
		}
		defer up.Close()
		done := make(chan struct{})
		go func() {
			_, _ = io.Copy(up, conn)
			if tc, ok := up.(*net.TCPConn); ok {
				_ = tc.CloseWrite()
			}
			close(done)
		}()
		_, _ = io.Copy(conn, up)
		conn.Close() // ends the copy towards the replica too
		<-done
		return
	}
	b.mu.Lock()
	b.refused++
	b.mu.Unlock()
}

// Refused is the number of connections no endpoint took (Envoy answers
// those 503).
func (b *tokenBalancer) Refused() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.refused
}
