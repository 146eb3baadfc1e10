package shim

import (
	"reflect"
	"strings"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	istioapi "istio.io/api/networking/v1alpha3"
	istionet "istio.io/client-go/pkg/apis/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func https(credential string, hosts ...string) *istioapi.Server {
	return &istioapi.Server{
		Port:  &istioapi.Port{Number: 443, Name: "https", Protocol: "HTTPS"},
		Hosts: hosts,
		Tls:   &istioapi.ServerTLSSettings{Mode: istioapi.ServerTLSSettings_SIMPLE, CredentialName: credential},
	}
}

func gateway(annotations map[string]string, servers ...*istioapi.Server) *istionet.Gateway {
	gw := &istionet.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "shop", Annotations: annotations}}
	gw.Spec.Selector = map[string]string{"istio": "ingressgateway"}
	gw.Spec.Servers = servers
	return gw
}

var ourIssuer = map[string]string{
	"cert-manager.io/issuer": "letsencrypt", "cert-manager.io/issuer-kind": "ACMEClusterIssuer", "cert-manager.io/issuer-group": "istio-acme.io",
}

func TestDesiredCertificates(t *testing.T) {
	type want struct {
		namespace, name string
		issuer          cmmeta.IssuerReference
		dnsNames        []string
	}
	ours := cmmeta.IssuerReference{Name: "letsencrypt", Kind: "ACMEClusterIssuer", Group: "istio-acme.io"}
	theirs := cmmeta.IssuerReference{Name: "letsencrypt", Kind: "ClusterIssuer", Group: "cert-manager.io"}
	tests := []struct {
		name    string
		gw      *istionet.Gateway
		want    []want
		skipped []string
	}{
		{
			name: "two HTTPS servers, two Secrets, in the gateway pods' namespace",
			gw: gateway(ourIssuer,
				&istioapi.Server{Port: &istioapi.Port{Number: 80, Name: "http", Protocol: "HTTP"}, Hosts: []string{"shop.example.com"}, Tls: &istioapi.ServerTLSSettings{HttpsRedirect: true}},
				https("shop-tls", "apps/shop.example.com", "./www.shop.example.com"),
				https("api-tls", "*/API.example.com."),
			),
			want: []want{
				{"istio-system", "shop-tls", ours, []string{"shop.example.com", "www.shop.example.com"}},
				{"istio-system", "api-tls", ours, []string{"api.example.com"}},
			},
		},
		{
			name: "servers sharing a Secret share the Certificate",
			gw:   gateway(map[string]string{"cert-manager.io/cluster-issuer": "letsencrypt"}, https("shared", "a.example.com"), https("kubernetes://shared", "b.example.com", "a.example.com")),
			want: []want{{"istio-system", "shared", theirs, []string{"a.example.com", "b.example.com"}}},
		},
		{
			// A third namespace's Secret of that name may be another
			// team's: cert-manager would overwrite it.
			name: "a credential in a third namespace is left out",
			gw:   gateway(map[string]string{"cert-manager.io/cluster-issuer": "letsencrypt"}, https("kubernetes://edge/shop-tls", "shop.example.com"), https("team-b/b-tls", "other.example.com")),
			skipped: []string{
				"spec.servers[0] (https): credentialName kubernetes://edge/shop-tls names namespace edge, which is neither the Gateway's (apps) nor its gateway pods' (istio-system)",
				"spec.servers[1] (https): credentialName team-b/b-tls names namespace team-b",
			},
		},
		{
			name: "a credential in the Gateway's own namespace",
			gw:   gateway(map[string]string{"cert-manager.io/cluster-issuer": "letsencrypt"}, https("apps/shop-tls", "shop.example.com")),
			want: []want{{"apps", "shop-tls", theirs, []string{"shop.example.com"}}},
		},
		{
			name: "a namespaced issuer is used only in the Gateway's own namespace",
			gw:   gateway(map[string]string{"cert-manager.io/issuer": "team"}, https("shop-tls", "shop.example.com"), https("apps/own-tls", "own.example.com")),
			want: []want{{"apps", "own-tls", cmmeta.IssuerReference{Name: "team", Kind: "Issuer", Group: "cert-manager.io"}, []string{"own.example.com"}}},
			skipped: []string{
				"spec.servers[0] (https): the Certificate for credentialName shop-tls goes to the gateway pods' namespace istio-system, where Issuer team would be that namespace's issuer, not this Gateway's",
			},
		},
		{
			name: "a wildcard with a cert-manager issuer is kept, * is not",
			gw:   gateway(map[string]string{"cert-manager.io/cluster-issuer": "letsencrypt"}, https("wild", "*.example.com", "*")),
			want: []want{{"istio-system", "wild", theirs, []string{"*.example.com"}}},
		},
		{
			name:    "a wildcard with our issuer is left out, and said so",
			gw:      gateway(ourIssuer, https("wild", "*.example.com", "www.example.com")),
			want:    []want{{"istio-system", "wild", ours, []string{"www.example.com"}}},
			skipped: []string{"spec.servers[0] (https): host *.example.com left out: ACMEClusterIssuer letsencrypt proves names with HTTP-01, which cannot prove a wildcard"},
		},
		{
			name: "credentials that are not Secrets we fill",
			gw: gateway(ourIssuer,
				https("kubernetes-gateway://apps/shop", "a.example.com"),
				https("sds://my-sds", "b.example.com"),
				https("builtin://", "c.example.com"),
				https("Bad_Name", "d.example.com"),
				&istioapi.Server{Port: &istioapi.Port{Number: 443, Name: "multi", Protocol: "HTTPS"}, Hosts: []string{"e.example.com"},
					Tls: &istioapi.ServerTLSSettings{Mode: istioapi.ServerTLSSettings_SIMPLE, CredentialNames: []string{"rsa", "ecdsa"}}},
				&istioapi.Server{Port: &istioapi.Port{Number: 443, Name: "files", Protocol: "HTTPS"}, Hosts: []string{"f.example.com"},
					Tls: &istioapi.ServerTLSSettings{Mode: istioapi.ServerTLSSettings_SIMPLE, ServerCertificate: "/etc/certs/tls.crt", PrivateKey: "/etc/certs/tls.key"}},
				&istioapi.Server{Port: &istioapi.Port{Number: 443, Name: "passthrough", Protocol: "TLS"}, Hosts: []string{"g.example.com"},
					Tls: &istioapi.ServerTLSSettings{Mode: istioapi.ServerTLSSettings_PASSTHROUGH, CredentialName: "g"}},
			),
			skipped: []string{
				"spec.servers[0] (https): credentialName kubernetes-gateway://apps/shop is Istio's form for Kubernetes Gateway API Gateways",
				"spec.servers[1] (https): credentialName sds://my-sds is not a Kubernetes Secret",
				"spec.servers[2] (https): credentialName builtin:// is not a Kubernetes Secret",
				"spec.servers[3] (https): credentialName Bad_Name: \"Bad_Name\" is not a valid Secret name",
				"spec.servers[4] (multi): credentialNames (several certificates) is not filled by one Certificate",
			},
		},
		{
			name:    "a server with only * is said so",
			gw:      gateway(ourIssuer, https("all", "*")),
			skipped: []string{"spec.servers[0] (https): no host a certificate can name"},
		},
		{
			name: "MUTUAL and OPTIONAL_MUTUAL present the credential too",
			gw: gateway(ourIssuer,
				&istioapi.Server{Port: &istioapi.Port{Number: 443, Name: "mtls", Protocol: "HTTPS"}, Hosts: []string{"m.example.com"},
					Tls: &istioapi.ServerTLSSettings{Mode: istioapi.ServerTLSSettings_MUTUAL, CredentialName: "m"}},
				&istioapi.Server{Port: &istioapi.Port{Number: 8443, Name: "optional", Protocol: "HTTPS"}, Hosts: []string{"o.example.com"},
					Tls: &istioapi.ServerTLSSettings{Mode: istioapi.ServerTLSSettings_OPTIONAL_MUTUAL, CredentialName: "o"}},
			),
			want: []want{{"istio-system", "m", ours, []string{"m.example.com"}}, {"istio-system", "o", ours, []string{"o.example.com"}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := DesiredCertificates(tt.gw, "istio-system", "")
			if err != nil {
				t.Fatal(err)
			}
			var got []want
			for _, c := range d.Certificates {
				if c.Spec.SecretName != c.Name {
					t.Errorf("Certificate %s fills Secret %s, want its own name", c.Name, c.Spec.SecretName)
				}
				got = append(got, want{c.Namespace, c.Name, c.Spec.IssuerRef, c.Spec.DNSNames})
			}
			if !reflect.DeepEqual(tt.want, got) {
				t.Errorf("Certificates\n got %+v\nwant %+v", got, tt.want)
			}
			if len(d.Skipped) != len(tt.skipped) {
				t.Fatalf("skipped %q, want %d reasons", d.Skipped, len(tt.skipped))
			}
			for i, s := range tt.skipped {
				if !strings.HasPrefix(d.Skipped[i], s) {
					t.Errorf("skipped[%d] = %q, want it to start with %q", i, d.Skipped[i], s)
				}
			}
		})
	}
}

func TestDesiredCertificatesWithoutPodNamespace(t *testing.T) {
	gw := gateway(ourIssuer, https("shop-tls", "shop.example.com"), https("apps/api-tls", "api.example.com"))
	d, err := DesiredCertificates(gw, "", "no pod has the Gateway's selector labels istio=ingressgateway")
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Certificates) != 1 || d.Certificates[0].Namespace != "apps" {
		t.Errorf("Certificates %v, want only the one whose credentialName names the Gateway's namespace", d.Certificates)
	}
	if len(d.Skipped) != 1 || !strings.Contains(d.Skipped[0], "credentialName shop-tls is read from the gateway pods' namespace, and no pod has the Gateway's selector labels") {
		t.Errorf("skipped %q", d.Skipped)
	}
}

func TestIssuerAnnotations(t *testing.T) {
	for _, tt := range []struct {
		annotations map[string]string
		want        cmmeta.IssuerReference
		err         string
	}{
		{map[string]string{"cert-manager.io/cluster-issuer": "le"}, cmmeta.IssuerReference{Name: "le", Kind: "ClusterIssuer", Group: "cert-manager.io"}, ""},
		{map[string]string{"cert-manager.io/issuer": "team"}, cmmeta.IssuerReference{Name: "team", Kind: "Issuer", Group: "cert-manager.io"}, ""},
		{ourIssuer, cmmeta.IssuerReference{Name: "letsencrypt", Kind: "ACMEClusterIssuer", Group: "istio-acme.io"}, ""},
		{map[string]string{"cert-manager.io/issuer": "a", "cert-manager.io/cluster-issuer": "b"}, cmmeta.IssuerReference{}, "both cert-manager.io/issuer and cert-manager.io/cluster-issuer are set"},
		{map[string]string{"cert-manager.io/cluster-issuer": "b", "cert-manager.io/issuer-group": "istio-acme.io"}, cmmeta.IssuerReference{}, "use cert-manager.io/issuer with cert-manager.io/issuer-kind and cert-manager.io/issuer-group"},
		{map[string]string{"cert-manager.io/issuer": ""}, cmmeta.IssuerReference{}, "the issuer's name is empty"},
	} {
		got, err := issuerRef(tt.annotations)
		if tt.err == "" && (err != nil || got != tt.want) {
			t.Errorf("%v: %+v, %v; want %+v", tt.annotations, got, err, tt.want)
		}
		if tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)) {
			t.Errorf("%v: %v, want an error containing %q", tt.annotations, err, tt.err)
		}
	}
}

func TestCertificateAnnotations(t *testing.T) {
	ann := map[string]string{
		"cert-manager.io/common-name":                 "shop.example.com",
		"cert-manager.io/duration":                    "2160h",
		"cert-manager.io/renew-before":                "360h",
		"cert-manager.io/private-key-algorithm":       "ECDSA",
		"cert-manager.io/private-key-size":            "384",
		"cert-manager.io/private-key-rotation-policy": "Always",
		"cert-manager.io/revision-history-limit":      "3",
		"cert-manager.io/usages":                      "digital signature, server auth",
	}
	crt := &cmapi.Certificate{}
	if err := applyAnnotations(crt, ann); err != nil {
		t.Fatal(err)
	}
	s := crt.Spec
	if s.CommonName != "shop.example.com" || s.Duration.Duration != 2160*time.Hour || s.RenewBefore.Duration != 360*time.Hour ||
		*s.RevisionHistoryLimit != 3 || s.PrivateKey.Algorithm != cmapi.ECDSAKeyAlgorithm || s.PrivateKey.Size != 384 ||
		s.PrivateKey.RotationPolicy != cmapi.RotationPolicyAlways || len(s.Usages) != 2 || s.Usages[1] != cmapi.UsageServerAuth {
		t.Errorf("spec from annotations: %+v (key %+v)", s, s.PrivateKey)
	}

	bad := map[string]string{
		"cert-manager.io/duration":                    "90 days",
		"cert-manager.io/private-key-algorithm":       "DSA",
		"cert-manager.io/private-key-size":            "1024",
		"cert-manager.io/private-key-rotation-policy": "Sometimes",
		"cert-manager.io/revision-history-limit":      "0",
		"cert-manager.io/usages":                      "server auth,teleport",
		"cert-manager.io/renew-before-percentage":     "100",
	}
	err := applyAnnotations(&cmapi.Certificate{}, bad)
	for _, want := range []string{
		`annotation cert-manager.io/duration: "90 days" is not a positive Go duration`,
		`annotation cert-manager.io/private-key-algorithm: "DSA" is not RSA, ECDSA or Ed25519`,
		`annotation cert-manager.io/private-key-size: "1024" is not an RSA key size from 2048 to 8192`,
		`annotation cert-manager.io/private-key-rotation-policy: "Sometimes" is not Always or Never`,
		`annotation cert-manager.io/revision-history-limit: "0" is not a whole number of at least 1`,
		`annotation cert-manager.io/usages: "teleport" is not a key usage`,
		`annotation cert-manager.io/renew-before-percentage: "100" is not a whole number from 1 to 99`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
}

func TestTemporaryCertificateBehindARedirect(t *testing.T) {
	redirect := &istioapi.Server{Port: &istioapi.Port{Number: 80, Name: "http", Protocol: "HTTP"}, Hosts: []string{"shop.example.com"}, Tls: &istioapi.ServerTLSSettings{HttpsRedirect: true}}
	for _, tt := range []struct {
		name string
		gw   *istionet.Gateway
		want string
	}{
		{"a redirect to HTTPS: its own server must answer the first issuance's handshake", gateway(ourIssuer, redirect, https("shop-tls", "shop.example.com")), "true"},
		{"no redirect", gateway(ourIssuer, https("shop-tls", "shop.example.com")), ""},
		{"turned off", gateway(map[string]string{"cert-manager.io/cluster-issuer": "le", "cert-manager.io/issue-temporary-certificate": "false"}, redirect, https("shop-tls", "shop.example.com")), ""},
		{"asked for", gateway(map[string]string{"cert-manager.io/cluster-issuer": "le", "cert-manager.io/issue-temporary-certificate": "true"}, https("shop-tls", "shop.example.com")), "true"},
	} {
		d, err := DesiredCertificates(tt.gw, "istio-system", "")
		if err != nil || len(d.Certificates) != 1 {
			t.Fatalf("%s: %v %v", tt.name, d, err)
		}
		if got := d.Certificates[0].Annotations["cert-manager.io/issue-temporary-certificate"]; got != tt.want {
			t.Errorf("%s: issue-temporary-certificate %q, want %q", tt.name, got, tt.want)
		}
	}
}
