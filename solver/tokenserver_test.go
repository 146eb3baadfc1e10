package solver

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/istio-acme/istio-acme-issuer/api/v1alpha1"
)

func TestTokenServerAnswers(t *testing.T) {
	challenges := []v1alpha1.ACMEChallenge{
		{Spec: v1alpha1.ACMEChallengeSpec{DNSName: "shop.example.com", Token: "tok1", Key: "tok1.thumb"}},
		{Spec: v1alpha1.ACMEChallengeSpec{DNSName: "api.example.com", Token: "tok2", Key: "tok2.thumb"}},
		{
			ObjectMeta: metav1.ObjectMeta{DeletionTimestamp: &metav1.Time{}},
			Spec:       v1alpha1.ACMEChallengeSpec{DNSName: "gone.example.com", Token: "tok3", Key: "tok3.thumb"},
		},
	}
	byToken := func(_ context.Context, token string) ([]v1alpha1.ACMEChallenge, error) {
		var out []v1alpha1.ACMEChallenge
		for _, c := range challenges {
			if c.Spec.Token == token {
				out = append(out, c)
			}
		}
		return out, nil
	}
	srv := &TokenServer{Lookup: byToken, Log: logr.Discard()}

	tests := []struct {
		name, method, host, path string
		wantStatus               int
		wantBody                 string
	}{
		{name: "known token on its host", method: "GET", host: "shop.example.com", path: "/.well-known/acme-challenge/tok1", wantStatus: 200, wantBody: "tok1.thumb"},
		{name: "host with port and case", method: "GET", host: "SHOP.example.com:80", path: "/.well-known/acme-challenge/tok1", wantStatus: 200, wantBody: "tok1.thumb"},
		{name: "host with trailing dot", method: "GET", host: "api.example.com.", path: "/.well-known/acme-challenge/tok2", wantStatus: 200, wantBody: "tok2.thumb"},
		{name: "known token on another host", method: "GET", host: "api.example.com", path: "/.well-known/acme-challenge/tok1", wantStatus: 404},
		{name: "unknown token", method: "GET", host: "shop.example.com", path: "/.well-known/acme-challenge/nope", wantStatus: 404},
		{name: "challenge being deleted", method: "GET", host: "gone.example.com", path: "/.well-known/acme-challenge/tok3", wantStatus: 404},
		{name: "other path", method: "GET", host: "shop.example.com", path: "/tok1", wantStatus: 404},
		{name: "empty token", method: "GET", host: "shop.example.com", path: "/.well-known/acme-challenge/", wantStatus: 404},
		{name: "nested path", method: "GET", host: "shop.example.com", path: "/.well-known/acme-challenge/tok1/x", wantStatus: 404},
		{name: "POST is refused", method: "POST", host: "shop.example.com", path: "/.well-known/acme-challenge/tok1", wantStatus: 405},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(tt.method, "http://placeholder"+tt.path, nil)
			req.Host = tt.host
			rec := httptest.NewRecorder()
			srv.ServeHTTP(rec, req)
			res := rec.Result()
			body, _ := io.ReadAll(res.Body)
			if res.StatusCode != tt.wantStatus {
				t.Fatalf("status %d, want %d (body %q)", res.StatusCode, tt.wantStatus, body)
			}
			if tt.wantBody != "" && string(body) != tt.wantBody {
				t.Errorf("body %q, want %q", body, tt.wantBody)
			}
			if got := res.Header.Get("Cache-Control"); got != "no-store" {
				t.Errorf("Cache-Control %q, want no-store", got)
			}
		})
	}
}

func TestTokenServerLookupFailureIs503(t *testing.T) {
	srv := &TokenServer{Log: logr.Discard(), Lookup: func(context.Context, string) ([]v1alpha1.ACMEChallenge, error) {
		return nil, errors.New("cache not synced")
	}}
	req := httptest.NewRequest("GET", "http://a.example/.well-known/acme-challenge/t", nil)
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, req)
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503 so the CA's retry or the self-check sees a transient fault", rec.Code)
	}
}

// A lookup or a provenance check that cannot finish is a 503 by the
// answer's deadline, which Istio's default retry policy retries on another
// replica, not a request held until the CA gives up; a check that fails is
// a 503 too, not the 404 of a challenge that is not ours.
func TestTokenServerAnswersInTime(t *testing.T) {
	challenge := v1alpha1.ACMEChallenge{Spec: v1alpha1.ACMEChallengeSpec{DNSName: "a.example", Token: "t", Key: "t.thumb"}}
	found := func(context.Context, string) ([]v1alpha1.ACMEChallenge, error) {
		return []v1alpha1.ACMEChallenge{challenge}, nil
	}
	blocked := func(ctx context.Context, _ string) ([]v1alpha1.ACMEChallenge, error) {
		<-ctx.Done() // an informer that cannot sync waits for the context
		return nil, ctx.Err()
	}
	tests := []struct {
		name   string
		lookup func(context.Context, string) ([]v1alpha1.ACMEChallenge, error)
		proven func(context.Context, *v1alpha1.ACMEChallenge) (bool, error)
		want   int
	}{
		{name: "lookup blocked", lookup: blocked, want: http.StatusServiceUnavailable},
		{name: "provenance check blocked", lookup: found, want: http.StatusServiceUnavailable, proven: func(ctx context.Context, _ *v1alpha1.ACMEChallenge) (bool, error) {
			<-ctx.Done()
			return false, ctx.Err()
		}},
		{name: "provenance check failed", lookup: found, want: http.StatusServiceUnavailable, proven: func(context.Context, *v1alpha1.ACMEChallenge) (bool, error) {
			return false, errors.New("API server unreachable")
		}},
		{name: "not ours", lookup: found, want: http.StatusNotFound, proven: func(context.Context, *v1alpha1.ACMEChallenge) (bool, error) { return false, nil }},
		{name: "ours", lookup: found, want: http.StatusOK, proven: func(context.Context, *v1alpha1.ACMEChallenge) (bool, error) { return true, nil }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := &TokenServer{Log: logr.Discard(), Lookup: tt.lookup, Proven: tt.proven, AnswerTimeout: 50 * time.Millisecond}
			req := httptest.NewRequest("GET", "http://a.example/.well-known/acme-challenge/t", nil)
			rec := httptest.NewRecorder()
			srv.ServeHTTP(rec, req) // returns only once the deadline ends what blocks
			if rec.Code != tt.want {
				t.Fatalf("status %d, want %d", rec.Code, tt.want)
			}
		})
	}
}

func TestTokenServerStartAndStop(t *testing.T) {
	srv := &TokenServer{Addr: "127.0.0.1:0", Log: logr.Discard(), Lookup: func(context.Context, string) ([]v1alpha1.ACMEChallenge, error) { return nil, nil }}
	if srv.ReadyCheck(nil) == nil {
		t.Fatal("ready before start")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Start(ctx) }()
	for srv.ReadyCheck(nil) != nil {
		select {
		case err := <-done:
			t.Fatalf("server stopped early: %v", err)
		case <-time.After(time.Millisecond):
		}
	}
	if srv.NeedLeaderElection() {
		t.Error("the token server must run on every replica")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("graceful stop returned %v", err)
	}
	if srv.ReadyCheck(nil) == nil {
		t.Fatal("still ready after stop")
	}
}
