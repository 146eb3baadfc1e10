package main

import (
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
