package solver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/istio-acme/istio-acme-issuer/api/v1alpha1"
	"github.com/istio-acme/istio-acme-issuer/internal/dnsname"
)

// TokenIndex is the cache index of ACMEChallenges by spec.token.
const TokenIndex = "spec.token"

// IndexChallengeToken is the index function for TokenIndex.
func IndexChallengeToken(obj client.Object) []string {
	ch, ok := obj.(*v1alpha1.ACMEChallenge)
	if !ok || ch.Spec.Token == "" {
		return nil
	}
	return []string{ch.Spec.Token}
}

// CacheLookup finds challenges by token in a cache that has TokenIndex.
func CacheLookup(r client.Reader) func(context.Context, string) ([]v1alpha1.ACMEChallenge, error) {
	return func(ctx context.Context, token string) ([]v1alpha1.ACMEChallenge, error) {
		var list v1alpha1.ACMEChallengeList
		if err := r.List(ctx, &list, client.MatchingFields{TokenIndex: token}); err != nil {
			return nil, err
		}
		return list.Items, nil
	}
}

// TokenServerHeader marks the token server's answers, so that the
// self-check can tell them from a route of someone else's without quoting
// what that route answered.
const TokenServerHeader = "X-Istio-Acme-Token-Server"

// DefaultAnswerTimeout is TokenServer.AnswerTimeout's default: cache reads
// take microseconds, and the CA waits several seconds for the whole answer.
const DefaultAnswerTimeout = 2 * time.Second

// maxTokenLength bounds the token in the path; real tokens are 43 characters.
const maxTokenLength = 128

// TokenServer answers HTTP-01 requests for the challenges that exist in the
// API server. It runs in every replica, with or without leadership, so the CA
// may reach any of them through the gateway.
type TokenServer struct {
	// Addr is the address to listen on, such as ":8089".
	Addr string
	// Lookup returns the challenges with a token; CacheLookup reads them
	// from the manager's cache.
	Lookup func(ctx context.Context, token string) ([]v1alpha1.ACMEChallenge, error)
	// Proven, when set, tells whether a challenge is one of ours
	// (Provenance.Proven): a hand-written ACMEChallenge gets a 404, and a
	// check that could not be made a 503.
	Proven func(ctx context.Context, ch *v1alpha1.ACMEChallenge) (bool, error)
	// Answered, when set, is told of each challenge answered
	// (Presentations.Answered).
	Answered func(ch *v1alpha1.ACMEChallenge)
	// AnswerTimeout bounds the lookups behind one answer (default
	// DefaultAnswerTimeout). A replica that cannot answer in time says 503,
	// which Istio's default retry policy retries on another endpoint,
	// instead of holding the CA's request until it gives up.
	AnswerTimeout time.Duration
	// Log is the server's logger.
	Log logr.Logger

	listening atomic.Bool
}

// NeedLeaderElection is false: every replica answers every challenge.
func (s *TokenServer) NeedLeaderElection() bool { return false }

// Start serves until ctx is done, then shuts down gracefully.
func (s *TokenServer) Start(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.Addr)
	if err != nil {
		return fmt.Errorf("token server: listen on %s: %w", s.Addr, err)
	}
	srv := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	s.Log.Info("serving ACME HTTP-01 tokens", "address", ln.Addr().String())
	s.listening.Store(true)
	defer s.listening.Store(false)

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("token server: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("token server: shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("token server: %w", err)
	}
	return nil
}

// ReadyCheck is a healthz.Checker that passes once the server listens.
func (s *TokenServer) ReadyCheck(*http.Request) error {
	if !s.listening.Load() {
		return errors.New("token server is not listening")
	}
	return nil
}

// ServeHTTP answers GET /.well-known/acme-challenge/<token> with the key
// authorization when a challenge for that token exists for the request's
// host, and 404 otherwise.
func (s *TokenServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set(TokenServerHeader, "1")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	token, ok := strings.CutPrefix(r.URL.Path, ChallengePathPrefix)
	if !ok || token == "" || len(token) > maxTokenLength || strings.Contains(token, "/") {
		http.NotFound(w, r)
		return
	}
	host := normalizeHost(r.Host)
	timeout := s.AnswerTimeout
	if timeout <= 0 {
		timeout = DefaultAnswerTimeout
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()

	challenges, err := s.Lookup(ctx, token)
	if err != nil {
		s.Log.Error(err, "looking up challenges", "token", token)
		http.Error(w, "temporarily unavailable", http.StatusServiceUnavailable)
		return
	}
	for i := range challenges {
		ch := &challenges[i]
		if ch.DeletionTimestamp != nil || !strings.EqualFold(ch.Spec.DNSName, host) {
			continue
		}
		if s.Proven != nil {
			ours, err := s.Proven(ctx, ch)
			if err != nil {
				s.Log.Error(err, "checking that a challenge is ours", "host", host, "challenge", ch.Namespace+"/"+ch.Name)
				http.Error(w, "temporarily unavailable", http.StatusServiceUnavailable)
				return
			}
			if !ours {
				s.Log.Info("not answering a challenge that no order or cert-manager Challenge of ours owns", "host", host, "challenge", ch.Namespace+"/"+ch.Name)
				continue
			}
		}
		s.Log.V(1).Info("answered challenge", "host", host, "token", token, "challenge", ch.Namespace+"/"+ch.Name)
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte(ch.Spec.Key)) // a failed write is the client's problem
		if s.Answered != nil {
			s.Answered(ch)
		}
		return
	}
	s.Log.V(1).Info("unknown token or host", "host", host, "token", token)
	http.NotFound(w, r)
}

// normalizeHost strips the port and a trailing dot from a Host header.
func normalizeHost(hostport string) string {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	return dnsname.Canonical(host)
}
