package solver

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/go-logr/logr"

	"github.com/istio-acme/istio-acme-issuer/api/v1alpha1"
)

// hostWithPort is a Host header naming the challenged host, as clients and
// gateways write it: any case, an optional trailing dot, an optional port.
var hostWithPort = regexp.MustCompile(`(?i)^shop\.example\.com\.?(:[0-9]*)?$`)

// FuzzTokenServer: whatever the method, path, Host header, size or
// encoding, the token server answers the key only to GET or HEAD of the
// exact token path on the challenged host, and 404 or 405 (never the key,
// never another challenge's key) to everything else. `make test` runs the
// seeds; `go test -fuzz FuzzTokenServer ./solver` searches further.
func FuzzTokenServer(f *testing.F) {
	const token, key, otherKey = "tok-A1", "tok-A1.thumb", "tok-B2.thumb"
	challenges := []v1alpha1.ACMEChallenge{
		{Spec: v1alpha1.ACMEChallengeSpec{DNSName: "shop.example.com", Token: token, Key: key}},
		{Spec: v1alpha1.ACMEChallengeSpec{DNSName: "api.example.com", Token: "tok-B2", Key: otherKey}},
	}
	srv := &TokenServer{Log: logr.Discard(), Lookup: func(_ context.Context, tok string) ([]v1alpha1.ACMEChallenge, error) {
		var out []v1alpha1.ACMEChallenge
		for _, c := range challenges {
			if c.Spec.Token == tok {
				out = append(out, c)
			}
		}
		return out, nil
	}}
	for _, seed := range [][3]string{
		{"GET", ChallengePathPrefix + token, "shop.example.com"},
		{"HEAD", ChallengePathPrefix + token, "SHOP.example.com.:80"},
		{"POST", ChallengePathPrefix + token, "shop.example.com"},
		{"GET", ChallengePathPrefix + token, "api.example.com"},
		{"GET", ChallengePathPrefix + "tok-B2", "shop.example.com"},
		{"GET", ChallengePathPrefix + token + "/", "shop.example.com"},
		{"GET", ChallengePathPrefix + "../acme-challenge/" + token, "shop.example.com"},
		{"GET", "/.well-known/acme-challenge/", "shop.example.com"},
		{"GET", ChallengePathPrefix + strings.Repeat("x", 5000), "shop.example.com"},
		{"GET", ChallengePathPrefix + "tok-a1", "shop.example.com"},
		{"GET", ChallengePathPrefix + token, "shop.example.com.evil"},
		{"GET", ChallengePathPrefix + token, "[::1]:80"},
		{"get", ChallengePathPrefix + token, "shop.example.com"},
		{"GET", "/", ""},
	} {
		f.Add(seed[0], seed[1], seed[2])
	}
	f.Fuzz(func(t *testing.T, method, path, host string) {
		req := &http.Request{Method: method, URL: &url.URL{Path: path}, Host: host, Header: http.Header{}}
		req = req.WithContext(context.Background())
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, req)
		body := rec.Body.String()
		wantKey := (method == http.MethodGet || method == http.MethodHead) && path == ChallengePathPrefix+token && hostWithPort.MatchString(host)
		switch {
		case wantKey:
			if rec.Code != http.StatusOK || body != key {
				t.Fatalf("%s %q Host %q: %d %q, want 200 with the key", method, path, host, rec.Code, body)
			}
		case rec.Code != http.StatusNotFound && rec.Code != http.StatusMethodNotAllowed:
			t.Fatalf("%s %q Host %q: %d, want 404 or 405", method, path, host, rec.Code)
		case strings.Contains(body, key) || strings.Contains(body, otherKey):
			t.Fatalf("%s %q Host %q: the answer %q leaks a key", method, path, host, body)
		}
	})
}
