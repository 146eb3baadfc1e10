package shim

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	istioapi "istio.io/api/networking/v1alpha3"
	istionet "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/istio-acme/istio-acme-issuer/internal/testenv"
)

// TestGatewayShim runs the shim against a real API server (with the
// garbage collector): Certificates appear where the gateway pods read
// credentialName, follow the Gateway's servers and annotations, are put
// back when deleted, leave someone else's Certificate alone, and go with
// the server, the annotation or the Gateway.
func TestGatewayShim(t *testing.T) {
	api := testenv.StartAPIServer(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cl := api.Client
	api.CreateNamespaces(t, "apps", "istio-system", "ignored")
	create := func(o client.Object) {
		t.Helper()
		if err := cl.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	create(&corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "istio-system", Name: "istio-ingressgateway-0", Labels: map[string]string{"istio": "ingressgateway"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "istio-proxy", Image: "istio/proxyv2"}}},
	})
	startShim(ctx, t, api, "apps", "istio-system")

	// Someone's own Certificate for a Secret a server names.
	create(&cmapi.Certificate{
		ObjectMeta: metav1.ObjectMeta{Namespace: "istio-system", Name: "legacy-tls"},
		Spec: cmapi.CertificateSpec{SecretName: "legacy-tls", DNSNames: []string{"legacy.example.com"},
			IssuerRef: cmmeta.IssuerReference{Name: "other", Kind: "ClusterIssuer", Group: "cert-manager.io"}},
	})
	// Someone's Secret that no Certificate manages (a certificate they
	// uploaded): the shim must not have cert-manager overwrite it.
	create(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "istio-system", Name: "uploaded-tls"}, Data: map[string][]byte{"tls.crt": []byte("theirs")}})
	gw := gateway(map[string]string{"cert-manager.io/cluster-issuer": "letsencrypt", "cert-manager.io/duration": "2160h"},
		&istioapi.Server{Port: &istioapi.Port{Number: 80, Name: "http", Protocol: "HTTP"}, Hosts: []string{"shop.example.com"}, Tls: &istioapi.ServerTLSSettings{HttpsRedirect: true}},
		https("shop-tls", "shop.example.com", "www.shop.example.com"),
		https("api-tls", "api.example.com"),
		https("legacy-tls", "legacy.example.com"),
		https("uploaded-tls", "uploaded.example.com"),
	)
	create(gw)

	shop := client.ObjectKey{Namespace: "istio-system", Name: "shop-tls"}
	api1 := client.ObjectKey{Namespace: "istio-system", Name: "api-tls"}
	waitCertificate(t, cl, shop, "shop.example.com,www.shop.example.com")
	crt := waitCertificate(t, cl, api1, "api.example.com")
	if crt.Spec.IssuerRef.Name != "letsencrypt" || crt.Spec.Duration.Duration != 2160*time.Hour || len(crt.OwnerReferences) != 0 || crt.Annotations[AnnotationGateway] != "apps/shop" {
		t.Errorf("Certificate %+v, want the ClusterIssuer, the duration, no owner (another namespace) and the Gateway named", crt)
	}
	waitEvent(ctx, t, cl, gw, "CertificateCreated", "in the gateway pods' namespace istio-system, where Istio reads credentialName")
	waitEvent(ctx, t, cl, gw, "CertificateLeftAlone", "Certificate istio-system/legacy-tls exists and it was not created for this Gateway")
	waitEvent(ctx, t, cl, gw, "SecretNotAdopted", "Secret istio-system/uploaded-tls exists and no Certificate uploaded-tls manages it")
	if err := cl.Get(ctx, client.ObjectKey{Namespace: "istio-system", Name: "uploaded-tls"}, &cmapi.Certificate{}); !apierrors.IsNotFound(err) {
		t.Errorf("a Certificate was created for someone's Secret uploaded-tls (%v)", err)
	}
	legacy := &cmapi.Certificate{}
	if err := cl.Get(ctx, client.ObjectKey{Namespace: "istio-system", Name: "legacy-tls"}, legacy); err != nil || legacy.Spec.IssuerRef.Name != "other" || legacy.Labels[LabelGateway] != "" {
		t.Errorf("the hand-written Certificate was changed: %+v (%v)", legacy, err)
	}

	// A server's hosts change; a server goes.
	update(ctx, t, cl, gw, func(g *istionet.Gateway) {
		g.Spec.Servers[1].Hosts = []string{"shop.example.com", "m.shop.example.com"}
		g.Spec.Servers = slices.Delete(g.Spec.Servers, 2, 3)
	})
	waitCertificate(t, cl, shop, "shop.example.com,m.shop.example.com")
	waitGone(t, cl, api1)

	// A Certificate of ours deleted by hand comes back.
	if err := cl.Delete(ctx, &cmapi.Certificate{ObjectMeta: metav1.ObjectMeta{Namespace: shop.Namespace, Name: shop.Name}}); err != nil {
		t.Fatal(err)
	}
	waitCertificate(t, cl, shop, "shop.example.com,m.shop.example.com")

	// A Gateway in the gateway pods' namespace owns its Certificate; the
	// garbage collector removes it with the Gateway.
	local := gateway(map[string]string{"cert-manager.io/issuer": "le", "cert-manager.io/issuer-kind": "ACMEClusterIssuer", "cert-manager.io/issuer-group": "istio-acme.io"},
		https("local-tls", "local.example.com", "*.local.example.com"))
	local.Namespace, local.Name = "istio-system", "local"
	create(local)
	localKey := client.ObjectKey{Namespace: "istio-system", Name: "local-tls"}
	crt = waitCertificate(t, cl, localKey, "local.example.com")
	if !metav1.IsControlledBy(crt, local) {
		t.Errorf("owners %v, want the Gateway", crt.OwnerReferences)
	}
	waitEvent(ctx, t, cl, local, "ServerSkipped", "host *.local.example.com left out: ACMEClusterIssuer le proves names with HTTP-01")
	if err := cl.Delete(ctx, local); err != nil {
		t.Fatal(err)
	}
	waitGone(t, cl, localKey)

	// A bad annotation value, and a selector that matches no pod: Events
	// that say what to fix, and no Certificate.
	bad := gateway(map[string]string{"cert-manager.io/cluster-issuer": "letsencrypt", "cert-manager.io/duration": "90d"}, https("bad-tls", "bad.example.com"))
	bad.Name = "bad"
	create(bad)
	waitEvent(ctx, t, cl, bad, "BadAnnotation", `annotation cert-manager.io/duration: "90d" is not a positive Go duration such as 2160h`)
	nowhere := gateway(map[string]string{"cert-manager.io/cluster-issuer": "letsencrypt"}, https("nowhere-tls", "nowhere.example.com"))
	nowhere.Name, nowhere.Spec.Selector = "nowhere", map[string]string{"istio": "no-such-gateway"}
	create(nowhere)
	waitEvent(ctx, t, cl, nowhere, "ServerSkipped", "no pod has the Gateway's selector labels istio=no-such-gateway")
	for _, name := range []string{"bad-tls", "nowhere-tls"} {
		if err := cl.Get(ctx, client.ObjectKey{Namespace: "istio-system", Name: name}, &cmapi.Certificate{}); !apierrors.IsNotFound(err) {
			t.Errorf("Certificate %s exists (%v), want none", name, err)
		}
	}
	for _, g := range []*istionet.Gateway{bad, nowhere} {
		if err := cl.Delete(ctx, g); err != nil {
			t.Fatal(err)
		}
	}

	// Out of the shim's namespaces: nothing.
	ignored := gateway(map[string]string{"cert-manager.io/cluster-issuer": "letsencrypt"}, https("ignored-tls", "ignored.example.com"))
	ignored.Namespace = "ignored"
	create(ignored)

	// The annotation goes: so do the Certificates; the hand-written one stays.
	update(ctx, t, cl, gw, func(g *istionet.Gateway) { delete(g.Annotations, "cert-manager.io/cluster-issuer") })
	waitGone(t, cl, shop)
	update(ctx, t, cl, gw, func(g *istionet.Gateway) { g.Annotations["cert-manager.io/cluster-issuer"] = "letsencrypt" })
	waitCertificate(t, cl, shop, "shop.example.com,m.shop.example.com")
	// The Gateway goes: its Certificate in another namespace goes too.
	if err := cl.Delete(ctx, gw); err != nil {
		t.Fatal(err)
	}
	waitGone(t, cl, shop)
	var all cmapi.CertificateList
	if err := cl.List(ctx, &all); err != nil {
		t.Fatal(err)
	}
	if len(all.Items) != 1 || all.Items[0].Name != "legacy-tls" {
		var names []string
		for _, c := range all.Items {
			names = append(names, c.Namespace+"/"+c.Name)
		}
		t.Errorf("Certificates left: %v, want only the hand-written one (none for the Gateway outside the shim's namespaces)", names)
	}
}

func startShim(ctx context.Context, t *testing.T, api *testenv.APIServer, namespaces ...string) {
	t.Helper()
	byObject, err := CertificateCacheOptions()
	if err != nil {
		t.Fatal(err)
	}
	mgr := testenv.NewManager(t, api, cache.Options{ByObject: byObject})
	if err := (&GatewayReconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Events: mgr.GetEventRecorder("istio-acme-issuer"), Namespaces: namespaces}).SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	testenv.RunManager(ctx, t, mgr)
}

func update(ctx context.Context, t *testing.T, cl client.Client, gw *istionet.Gateway, mutate func(*istionet.Gateway)) {
	t.Helper()
	if err := cl.Get(ctx, client.ObjectKeyFromObject(gw), gw); err != nil {
		t.Fatal(err)
	}
	mutate(gw)
	if err := cl.Update(ctx, gw); err != nil {
		t.Fatal(err)
	}
}

// waitCertificate waits until the Certificate exists with these DNS names
// (comma-separated, in order) and returns it.
func waitCertificate(t *testing.T, cl client.Client, key client.ObjectKey, dnsNames string) *cmapi.Certificate {
	t.Helper()
	crt := &cmapi.Certificate{}
	testenv.WaitFor(t, "Certificate "+key.String()+" for "+dnsNames, func() (bool, string) {
		if err := cl.Get(context.Background(), key, crt); err != nil {
			return false, err.Error()
		}
		return strings.Join(crt.Spec.DNSNames, ",") == dnsNames && crt.Spec.SecretName == key.Name, strings.Join(crt.Spec.DNSNames, ",")
	})
	return crt
}

func waitGone(t *testing.T, cl client.Client, key client.ObjectKey) {
	t.Helper()
	testenv.WaitFor(t, "Certificate "+key.String()+" to be deleted", func() (bool, string) {
		err := cl.Get(context.Background(), key, &cmapi.Certificate{})
		return apierrors.IsNotFound(err), fmt.Sprint(err)
	})
}

func waitEvent(ctx context.Context, t *testing.T, cl client.Client, gw *istionet.Gateway, reason, text string) {
	t.Helper()
	testenv.WaitFor(t, "Event "+reason+" on Gateway "+gw.Name, func() (bool, string) {
		return testenv.FindEvent(ctx, cl, gw.Namespace, func(r corev1.ObjectReference) bool { return r.Kind == "Gateway" && r.Name == gw.Name }, reason, text)
	})
}
