package main

import (
	"slices"
	"strings"
	"testing"

	"github.com/istio-acme/istio-acme-issuer/api/v1alpha1"
)

func TestTokenServiceFlag(t *testing.T) {
	o, err := parseFlags(nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := v1alpha1.DefaultIstioHTTP01Solver().TokenService; o.tokenService != want {
		t.Errorf("default --token-service %+v, want the chart's default Service %+v", o.tokenService, want)
	}
	o, err = parseFlags([]string{"--token-service=platform/acme:9000"})
	if err != nil {
		t.Fatal(err)
	}
	if want := (v1alpha1.TokenServiceReference{Namespace: "platform", Name: "acme", Port: 9000}); o.tokenService != want {
		t.Errorf("--token-service=platform/acme:9000 gave %+v", o.tokenService)
	}
	for _, bad := range []string{"acme:9000", "platform/acme", "platform/acme:0", "platform/acme:70000", "/acme:80", "platform/:80", "platform/acme:http"} {
		if _, err := parseFlags([]string{"--token-service=" + bad}); err == nil || !strings.Contains(err.Error(), "namespace/name:port") {
			t.Errorf("--token-service=%s: got %v, want an error naming the form namespace/name:port", bad, err)
		}
	}
}

func TestPprofIsOffByDefault(t *testing.T) {
	o, err := parseFlags(nil)
	if err != nil {
		t.Fatal(err)
	}
	if o.pprofAddress != "0" {
		t.Errorf("--pprof-bind-address defaults to %q, want \"0\" (off): it exposes the process's memory", o.pprofAddress)
	}
}

func TestNamespacedIssuerFlags(t *testing.T) {
	o, err := parseFlags([]string{"--token-service=platform/acme:9000"})
	if err != nil {
		t.Fatal(err)
	}
	p := o.namespacedIssuers
	if !slices.Equal(p.GatewayNamespaces, []string{"istio-system"}) || len(p.GatewaySelectors) != 1 || p.GatewaySelectors[0]["istio"] != "ingressgateway" ||
		len(p.TokenServices) != 1 || p.TokenServices[0] != (v1alpha1.TokenServiceReference{Namespace: "platform", Name: "acme", Port: 9000}) {
		t.Errorf("defaults %+v, want istio-system, istio=ingressgateway and --token-service's Service", p)
	}
	o, err = parseFlags([]string{
		"--namespaced-issuer-gateway-namespaces=istio-system, istio-ingress",
		"--namespaced-issuer-gateway-selectors=istio=ingressgateway;istio=ingressgateway,istio.io/rev=canary",
		"--namespaced-issuer-token-services=a/b:80,c/d:81",
	})
	if err != nil {
		t.Fatal(err)
	}
	p = o.namespacedIssuers
	if !slices.Equal(p.GatewayNamespaces, []string{"istio-system", "istio-ingress"}) || len(p.GatewaySelectors) != 2 || p.GatewaySelectors[1]["istio.io/rev"] != "canary" || len(p.TokenServices) != 2 {
		t.Errorf("parsed %+v", p)
	}
	if _, err := parseFlags([]string{"--namespaced-issuer-gateway-selectors=not a selector"}); err == nil {
		t.Error("a malformed selector was accepted")
	}
}

func TestIstioMeshConfigFlag(t *testing.T) {
	o, err := parseFlags(nil)
	if err != nil {
		t.Fatal(err)
	}
	if o.istioMeshConfig.String() != "istio-system/istio" || o.scopeGatewayToNamespace {
		t.Errorf("defaults %s, scoped %v; want istiod's ConfigMap istio-system/istio, not scoped", o.istioMeshConfig, o.scopeGatewayToNamespace)
	}
	if o, err = parseFlags([]string{"--istio-mesh-config=istio-system/istio-canary", "--scope-gateway-to-namespace"}); err != nil || o.istioMeshConfig.Name != "istio-canary" || !o.scopeGatewayToNamespace {
		t.Errorf("revisioned ConfigMap and scoping: %+v, %v", o, err)
	}
	if o, err = parseFlags([]string{"--istio-mesh-config="}); err != nil || o.istioMeshConfig.Name != "" {
		t.Errorf("empty --istio-mesh-config: %s, %v; want none read", o.istioMeshConfig, err)
	}
	for _, bad := range []string{"istio", "istio-system/", "/istio", "a/b/c"} {
		if _, err := parseFlags([]string{"--istio-mesh-config=" + bad}); err == nil || !strings.Contains(err.Error(), "namespace/name") {
			t.Errorf("--istio-mesh-config=%s: got %v, want an error naming namespace/name", bad, err)
		}
	}
}
