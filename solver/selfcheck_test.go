package solver

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/istio-acme/istio-acme-issuer/api/v1alpha1"
	"github.com/istio-acme/istio-acme-issuer/internal/testenv"
)

func TestSelfCheck(t *testing.T) {
	const key = "tok.thumbprint"
	tests := []struct {
		name    string
		handler http.HandlerFunc
		want    []string // empty: the check passes
		// absent must not be in the message: what answered is never quoted.
		absent string
	}{
		{name: "the token comes back", handler: func(w http.ResponseWriter, r *http.Request) {
			if r.Host != "shop.example.com" || r.URL.Path != "/.well-known/acme-challenge/tok" {
				http.NotFound(w, r)
				return
			}
			_, _ = w.Write([]byte(key))
		}},
		{name: "no route", handler: http.NotFound, want: []string{"returned 404", "19-byte body", "not the token server", "shop.example.com"}, absent: "page not found"},
		{name: "Envoy answers itself", handler: func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Server", "istio-envoy")
			w.WriteHeader(http.StatusNotFound)
		}, want: []string{"returned 404 with an empty body from the gateway itself"}},
		{name: "the token server does not know the token", handler: func(w http.ResponseWriter, r *http.Request) {
			(&TokenServer{Lookup: func(context.Context, string) ([]v1alpha1.ACMEChallenge, error) { return nil, nil }}).ServeHTTP(w, r)
		}, want: []string{"returned 404", "from the token server (it knows no challenge"}, absent: "page not found"},
		{name: "the token server cannot read the challenges", handler: func(w http.ResponseWriter, r *http.Request) {
			(&TokenServer{Lookup: func(context.Context, string) ([]v1alpha1.ACMEChallenge, error) { return nil, errors.New("not synced") }}).ServeHTTP(w, r)
		}, want: []string{"returned 503", "from the token server (it could not read the challenge"}},
		{name: "an https redirect", handler: func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "https://shop.example.com"+r.URL.Path, http.StatusMovedPermanently)
		}, want: []string{"https://shop.example.com/.well-known/acme-challenge/tok", ":443"}},
		{name: "a redirect to another host is not followed", handler: func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "http://elsewhere.example.org/", http.StatusFound)
		}, want: []string{"redirect to http://elsewhere.example.org/", "another host"}},
		{name: "a redirect to another port is not followed", handler: func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "http://shop.example.com:8080/x", http.StatusFound)
		}, want: []string{"only ports 80 and 443"}},
		{name: "the user's app answers", handler: func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("X-Envoy-Upstream-Service-Time", "3")
			_, _ = w.Write([]byte("<html>shop</html>"))
		}, want: []string{"200 with a 17-byte body from a Service that is not the token server", "not this challenge's key authorization"}, absent: "shop</html>"},
		{name: "one replica of three is wrong", handler: func() http.HandlerFunc {
			n := 0
			return func(w http.ResponseWriter, r *http.Request) {
				n++
				if n == 2 {
					http.NotFound(w, r)
					return
				}
				_, _ = w.Write([]byte(key))
			}
		}(), want: []string{"returned 404"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(tt.handler)
			defer srv.Close()
			addr := strings.TrimPrefix(srv.URL, "http://")
			err := (&SelfCheck{}).Check(context.Background(), addr, "shop.example.com", "tok", key)
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("self-check failed: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("self-check passed")
			}
			for _, w := range append(tt.want, addr) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("message %q lacks %q", err, w)
				}
			}
			if tt.absent != "" && strings.Contains(err.Error(), tt.absent) {
				t.Errorf("message %q quotes the answer (%q)", err, tt.absent)
			}
		})
	}
	if err := (&SelfCheck{}).Check(context.Background(), "127.0.0.1:1", "shop.example.com", "tok", key); err == nil || !strings.Contains(err.Error(), "failed") {
		t.Errorf("unreachable gateway: %v", err)
	}
}

// A gateway that resets every connection fails the self-check with the same
// message each time, although every attempt comes from another client
// port: the message is what decides whether the status is written again.
func TestSelfCheckMessageIsStableAcrossAttempts(t *testing.T) {
	addr := testenv.ServeTCP(t, func(conn net.Conn) {
		// Read the request, then reset: RST instead of FIN.
		_, _ = conn.Read(make([]byte, 4096))
		_ = conn.(*net.TCPConn).SetLinger(0)
		_ = conn.Close()
	})
	gw := &SelfCheck{}
	var messages []string
	for range 3 {
		err := gw.Check(context.Background(), addr, "shop.example.com", "tok", "tok.key")
		if err == nil {
			t.Fatal("the self-check passed against a gateway that resets every connection")
		}
		messages = append(messages, err.Error())
	}
	if messages[0] != messages[1] || messages[1] != messages[2] {
		t.Errorf("the self-check's message changes between attempts:\n%s", strings.Join(messages, "\n"))
	}
	if !strings.Contains(messages[0], "connection reset") || strings.Contains(messages[0], "->") {
		t.Errorf("message %q, want the reset named without the client's address", messages[0])
	}
}
