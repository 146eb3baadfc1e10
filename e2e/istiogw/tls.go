package istiogw

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net/http"
	"strings"
	"testing"
	"time"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"istio.io/istio/pilot/pkg/model/credentials"
	"istio.io/istio/pilot/pkg/simulation"
	"istio.io/istio/pilot/test/xdstest"
	"istio.io/istio/pkg/config/schema/kind"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// StartTLS also listens with TLS on addr (the gateway's port 443). Each
// handshake is answered as Istio's gateway answers it: the SNI picks the
// HTTPS server's filter chain in Istio's translation, and the certificate
// is that server's credential, read from its Secret (in the gateway pods'
// namespace for a plain credentialName). When the server has no usable
// credential, the handshake fails, as it does while Envoy's SDS waits for
// a Secret that does not exist; so does one that asks for a client
// certificate, which neither the CA nor the self-check presents.
func (g *Gateway) StartTLS(t *testing.T, addr string) {
	t.Helper()
	builtin, err := selfSigned()
	if err != nil {
		t.Fatal(err)
	}
	g.builtin = builtin
	conf := &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			cert, err := g.handshake(hello.Context(), hello.ServerName)
			if err != nil {
				g.mu.Lock()
				if g.failedHandshakes == nil {
					g.failedHandshakes = map[string]int{}
				}
				g.failedHandshakes[hello.ServerName]++
				g.mu.Unlock()
				g.t.Logf("istio gateway: TLS handshake for SNI %q failed: %v", hello.ServerName, err)
				return nil, err
			}
			return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
		},
	}
	ln, err := tls.Listen("tcp", addr, conf)
	if err != nil {
		t.Fatalf("istio gateway: %v", err)
	}
	g.TLSAddr = ln.Addr().String()
	srv := &http.Server{Handler: g, ReadHeaderTimeout: 10 * time.Second, ErrorLog: log.New(io.Discard, "", 0)} // failed handshakes are logged by the test
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Logf("istio gateway (TLS) stopped: %v", err)
		}
	}()
	t.Cleanup(func() { _ = srv.Close() })
}

// FailedHandshakes counts the TLS handshakes for SNI host that failed.
func (g *Gateway) FailedHandshakes(host string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.failedHandshakes[host]
}

// handshake finds the certificate Istio's gateway would serve for sni,
// from the cache's view and, when that serves none, from the API server's.
func (g *Gateway) handshake(ctx context.Context, sni string) (tls.Certificate, error) {
	cert, err := g.handshakeFrom(ctx, g.Reader, sni)
	if err != nil && g.APIReader != nil {
		return g.handshakeFrom(ctx, g.APIReader, sni)
	}
	return cert, err
}

func (g *Gateway) handshakeFrom(ctx context.Context, r client.Reader, sni string) (tls.Certificate, error) {
	g.mu.Lock()
	sim, err := g.simulation(ctx, r)
	var resource string
	var mutual bool
	if err == nil {
		resource, mutual, err = g.credentialOf(sim, sni)
	}
	g.mu.Unlock()
	if err != nil {
		return tls.Certificate{}, err
	}
	if mutual {
		return tls.Certificate{}, fmt.Errorf("the HTTPS server for %q asks for a client certificate", sni)
	}
	return g.loadCredential(ctx, r, resource)
}

// credentialOf runs a TLS connection with sni through the translation and
// returns the SDS resource its filter chain serves.
func (g *Gateway) credentialOf(sim *simulation.Simulation, sni string) (string, bool, error) {
	res, err := g.run(sim, call{host: sni, path: "/", tls: true})
	if err != nil {
		return "", false, err
	}
	if res.FilterChainMatched == "" && res.RouteConfigMatched == "" {
		return "", false, fmt.Errorf("no HTTPS server terminates TLS for SNI %q (%v)", sni, res.Error)
	}
	return ChainCredential(g.t, sim, res)
}

// ChainCredential finds the SDS resource (kubernetes://name, ...) of the
// TLS filter chain a simulated request was matched to, and whether that
// chain asks for a client certificate.
func ChainCredential(t *testing.T, sim *simulation.Simulation, res simulation.Result) (string, bool, error) {
	for _, l := range sim.Listeners {
		if l.GetName() != res.ListenerMatched {
			continue
		}
		for _, fc := range l.GetFilterChains() {
			if fc.GetName() != res.FilterChainMatched || fc.GetTransportSocket() == nil {
				continue
			}
			if hcm := xdstest.ExtractHTTPConnectionManager(t, fc); res.RouteConfigMatched != "" && hcm.GetRds().GetRouteConfigName() != res.RouteConfigMatched {
				continue
			}
			ctx := &tlsv3.DownstreamTlsContext{}
			if err := fc.GetTransportSocket().GetTypedConfig().UnmarshalTo(ctx); err != nil {
				return "", false, err
			}
			sds := ctx.GetCommonTlsContext().GetTlsCertificateSdsSecretConfigs()
			if len(sds) == 0 {
				return "", false, fmt.Errorf("filter chain %q serves no SDS certificate", fc.GetName())
			}
			return sds[0].GetName(), ctx.GetRequireClientCertificate().GetValue(), nil
		}
	}
	return "", false, fmt.Errorf("no TLS filter chain %q (route configuration %q) on listener %q", res.FilterChainMatched, res.RouteConfigMatched, res.ListenerMatched)
}

// loadCredential reads an SDS resource as Istio's SDS server does: from the
// Secret it names, resolved with Istio's own parser.
func (g *Gateway) loadCredential(ctx context.Context, r client.Reader, resource string) (tls.Certificate, error) {
	switch {
	case resource == "default":
		// builtin://: the workload's own mesh certificate.
		return g.builtin, nil
	case strings.HasPrefix(resource, credentials.InvalidSecretTypeURI):
		return tls.Certificate{}, fmt.Errorf("credential %s is invalid", resource)
	}
	sr, err := credentials.ParseResourceName(resource, g.Namespace, "", "")
	if err != nil {
		return tls.Certificate{}, err
	}
	if sr.ResourceKind != kind.Secret {
		return tls.Certificate{}, fmt.Errorf("credential %s holds no certificate and key", resource)
	}
	var sec corev1.Secret
	if err := r.Get(ctx, client.ObjectKey{Namespace: sr.Namespace, Name: sr.Name}, &sec); err != nil {
		return tls.Certificate{}, fmt.Errorf("credential %s: Secret %s/%s: %w", resource, sr.Namespace, sr.Name, err)
	}
	certPEM, keyPEM := sec.Data[corev1.TLSCertKey], sec.Data[corev1.TLSPrivateKeyKey]
	if len(certPEM) == 0 && len(keyPEM) == 0 {
		certPEM, keyPEM = sec.Data["cert"], sec.Data["key"]
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("credential %s: Secret %s/%s holds no usable certificate and key: %w", resource, sr.Namespace, sr.Name, err)
	}
	return cert, nil
}

func selfSigned() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "istio ingress gateway (test)"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
