package e2e

import (
	"context"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/istio-acme/istio-acme-issuer/api/v1alpha1"
	"github.com/istio-acme/istio-acme-issuer/internal/testenv"
	"github.com/istio-acme/istio-acme-issuer/solver"
)

// TestEndToEnd issues certificates through cert-manager, our controller,
// Pebble and an ingress gateway routed by Istio's own simulation.
func TestEndToEnd(t *testing.T) {
	c := startCluster(t)
	c.clusterIssuer("pebble", v1alpha1.ACMESolver{})
	ctx := context.Background()

	names := []string{"shop.example.com", "www.shop.example.com"}
	crt := c.certificate("shop", "pebble", names...)

	t.Run("a Certificate for two names becomes Ready through Istio routes", func(t *testing.T) {
		elapsed := c.waitReady(crt, 60*time.Second)
		leaf := c.verifySecret(crt, names...)
		t.Logf("issued certificate serial %s for SANs %v; Certificate creation to Ready: %s", leaf.SerialNumber, leaf.DNSNames, elapsed.Round(time.Millisecond))
		for _, host := range names {
			if !c.createdGatewayFor(host) {
				t.Errorf("no Gateway of ours was created for %s, which nothing else serves", host)
			}
			if n := c.gateway.Served("LetsEncrypt-Pebble-VA", host, solver.ChallengePathPrefix); n == 0 {
				t.Errorf("the CA never fetched a token for %s through the Istio gateway", host)
			}
			if n := c.gateway.Served(solver.SelfCheckUserAgent, host, solver.ChallengePathPrefix); n == 0 {
				t.Errorf("the controller never checked the token for %s through the Istio gateway before the CA", host)
			}
		}
	})

	t.Run("the request's one Event says the certificate was issued by which order, and raises no Warning", func(t *testing.T) {
		isRequest := func(r corev1.ObjectReference) bool {
			return r.Kind == cmapi.CertificateRequestKind && strings.HasPrefix(r.Name, crt.Name+"-")
		}
		// Events are sent in the background: wait for the last one.
		c.eventually("the Issued Event on "+crt.Name+"'s request", 30*time.Second, func() (bool, string) {
			return testenv.FindEvent(ctx, c.cl, crt.Namespace, isRequest, "Issued", "issued by order")
		})
		evs, err := testenv.EventsAbout(ctx, c.cl, crt.Namespace, isRequest)
		if err != nil {
			t.Fatal(err)
		}
		var reasons []string
		for _, e := range evs {
			if e.ReportingController != "istio-acme-issuer" {
				continue // cert-manager's approver records one too
			}
			reasons = append(reasons, e.Reason)
			if e.Type != corev1.EventTypeNormal {
				t.Errorf("a normal issuance recorded a %s Event on the request: %s: %s", e.Type, e.Reason, e.Note)
			}
		}
		slices.Sort(reasons)
		if want := []string{"Issued"}; !slices.Equal(reasons, want) {
			t.Errorf("the request's Events are %v, want %v (Events only where a user has something to do, and the outcome)", reasons, want)
		}
	})

	t.Run("kubectl shows the order Ready with its names, found by its request's label, and the challenges leave no Event", func(t *testing.T) {
		request := crt.Name + "-1"
		var orders v1alpha1.ACMEOrderList
		if err := c.cl.List(ctx, &orders, client.InNamespace(crt.Namespace), client.MatchingLabels{v1alpha1.LabelCertificateRequest: request}); err != nil {
			t.Fatal(err)
		}
		if len(orders.Items) != 1 {
			t.Fatalf("%d ACMEOrders labelled %s=%s, want 1", len(orders.Items), v1alpha1.LabelCertificateRequest, request)
		}
		order := orders.Items[0]
		table, err := testenv.GetTable(ctx, c.api.Config, "/apis/istio-acme.io/v1alpha1/namespaces/"+crt.Namespace+"/acmeorders")
		if err != nil {
			t.Fatal(err)
		}
		if got, want := table.Default(), []string{"Name", "Ready", "Reason", "Names", "Request", "Age"}; !slices.Equal(got, want) {
			t.Errorf("kubectl get acmeorders shows columns %v, want %v", got, want)
		}
		for i := range table.Rows {
			if table.Cell(i, "Name") != order.Name {
				continue
			}
			if table.Cell(i, "Ready") != "True" || table.Cell(i, "Reason") != v1alpha1.OrderReasonIssued || !strings.Contains(table.Cell(i, "Names"), names[1]) || table.Cell(i, "Request") != request {
				t.Errorf("kubectl get acmeorders shows %v for the issued order (columns %v)", table.Rows[i], table.Columns)
			}
		}
		issuers, err := testenv.GetTable(ctx, c.api.Config, "/apis/istio-acme.io/v1alpha1/acmeclusterissuers")
		if err != nil {
			t.Fatal(err)
		}
		if got, want := issuers.Default(), []string{"Name", "Ready", "Age"}; !slices.Equal(got, want) {
			t.Errorf("kubectl get acmeclusterissuers shows columns %v, want %v (the rest with -o wide)", got, want)
		}
		// The challenges are gone with the issuance. A validation that
		// succeeded leaves no Event behind: nobody has anything to do.
		evs, err := testenv.EventsAbout(ctx, c.cl, crt.Namespace, func(r corev1.ObjectReference) bool {
			return r.Kind == "ACMEChallenge" && strings.HasPrefix(r.Name, order.Name+"-")
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			t.Errorf("a normal issuance recorded an Event on ACMEChallenge %s: %s %s: %s", e.Regarding.Name, e.Type, e.Reason, e.Note)
		}
	})

	t.Run("the metrics count the order, its challenges and the time to issue", func(t *testing.T) {
		issuer := `issuer="pebble",issuer_kind="ACMEClusterIssuer"`
		for _, m := range []struct {
			name   string
			labels []string
			want   float64
		}{
			{"istio_acme_orders_total", []string{issuer, `outcome="created"`}, 1},
			{"istio_acme_orders_total", []string{issuer, `outcome="valid"`}, 1},
			{"istio_acme_orders_total", []string{`outcome="invalid"`}, 0},
			{"istio_acme_challenges_total", []string{`outcome="accepted"`}, 2},
			{"istio_acme_challenges_total", []string{`outcome="valid"`}, 2},
			{"istio_acme_time_to_issue_seconds_count", []string{issuer}, 1},
			{"istio_acme_build_info", []string{`version="` + controllerVersion + `"`}, 1},
		} {
			if got := c.metricSum(m.name, m.labels...); got != m.want {
				t.Errorf("%s{%s} = %v, want %v", m.name, strings.Join(m.labels, ","), got, m.want)
			}
		}
		out, err := exec.Command(binaries.controller, "--version").CombinedOutput()
		if err != nil || !strings.HasPrefix(string(out), "istio-acme-issuer "+controllerVersion+" (go") {
			t.Errorf("istio-acme-issuer --version: %v: %q, want the stamped version %s and the Go version", err, out, controllerVersion)
		}
		t.Logf("time to issue: sum %vs over %v certificate(s)", c.metricSum("istio_acme_time_to_issue_seconds_sum"), c.metricSum("istio_acme_time_to_issue_seconds_count"))
	})

	t.Run("every query of the chart's dashboard and alerts reads series the controller and cert-manager export", func(t *testing.T) {
		checkMonitoring(t, c)
	})

	t.Run("a namespaced ACMEIssuer issues with its own account Secret", func(t *testing.T) {
		iss := &v1alpha1.ACMEIssuer{
			ObjectMeta: metav1.ObjectMeta{Namespace: appNamespace, Name: "team"},
			Spec: v1alpha1.ACMEIssuerSpec{
				Server:              c.pebble.DirectoryURL,
				CABundle:            c.pebble.ServerCAPEM,
				PrivateKeySecretRef: v1alpha1.SecretKeySelector{Name: "team-account"},
			},
		}
		c.create(iss)
		team := c.certificateOf("team", "ACMEIssuer", "team", "team.example.com")
		elapsed := c.waitReady(team, 60*time.Second)
		c.verifySecret(team, "team.example.com")
		if err := c.cl.Get(ctx, client.ObjectKey{Namespace: appNamespace, Name: "team-account"}, &corev1.Secret{}); err != nil {
			t.Errorf("the ACMEIssuer's account key is not in its own namespace: %v", err)
		}
		t.Logf("ACMEIssuer apps/team: Certificate Ready after %s", elapsed.Round(time.Millisecond))
	})

	t.Run("cmctl status shows the certificate Ready", func(t *testing.T) {
		out := c.cmctl("status", "certificate", crt.Name, "-n", crt.Namespace)
		t.Logf("cmctl status certificate %s:\n%s", crt.Name, out)
		for _, want := range []string{"Name: shop", "Ready: True", "- shop.example.com", "- www.shop.example.com", "Issuer Common Name: Pebble Intermediate"} {
			if !strings.Contains(out, want) {
				t.Errorf("cmctl status output lacks %q", want)
			}
		}
	})

	t.Run("none of our Istio objects remain", func(t *testing.T) {
		c.waitNothingLeft()
	})

	t.Run("cmctl renew issues a second certificate", func(t *testing.T) {
		before := c.verifySecret(crt, names...)
		c.cmctl("renew", crt.Name, "-n", crt.Namespace)
		c.eventually("the renewed certificate", 60*time.Second, func() (bool, string) {
			got := &cmapi.Certificate{}
			if err := c.cl.Get(ctx, client.ObjectKeyFromObject(crt), got); err != nil {
				return false, err.Error()
			}
			if got.Status.Revision == nil || *got.Status.Revision < 2 {
				return false, c.requestState(crt)
			}
			return isReady(got), c.requestState(crt)
		})
		after := c.verifySecret(crt, names...)
		if after.SerialNumber.Cmp(before.SerialNumber) == 0 {
			t.Fatal("renewal left the same certificate in the Secret")
		}
		t.Logf("renewed: serial %s replaced %s", after.SerialNumber, before.SerialNumber)
		c.waitNothingLeft()
	})

	t.Run("a restarted controller resumes the same ACME order", func(t *testing.T) {
		// The issuer's gateway namespace does not exist yet and the
		// controller may not write there, so the challenge cannot be
		// published and the order stays pending.
		c.clusterIssuer("late", v1alpha1.ACMESolver{Istio: v1alpha1.IstioHTTP01Solver{
			Gateways:         []v1alpha1.GatewayWorkloadSelector{{Selector: map[string]string{"istio": "ingressgateway"}}},
			GatewayNamespace: "late-gateways",
			TokenService:     v1alpha1.TokenServiceReference{Name: "istio-acme-issuer", Namespace: controllerNamespace, Port: tokenServicePort},
		}})
		resume := c.certificate("resume", "late", "resume.example.com")
		var orderURL, orderName string
		c.eventually("an order waiting for its route", 30*time.Second, func() (bool, string) {
			var orders v1alpha1.ACMEOrderList
			if err := c.cl.List(ctx, &orders, client.InNamespace(appNamespace)); err != nil {
				return false, err.Error()
			}
			for _, o := range orders.Items {
				if o.Spec.IssuerRef.Name == "late" && o.Status.URL != "" {
					orderURL, orderName = o.Status.URL, o.Name
				}
			}
			var chs v1alpha1.ACMEChallengeList
			if err := c.cl.List(ctx, &chs, client.InNamespace(appNamespace)); err != nil {
				return false, err.Error()
			}
			for _, ch := range chs.Items {
				if ch.Spec.Order == orderName && strings.Contains(ch.Status.Message, "late-gateways") {
					return orderURL != "", ch.Status.Message
				}
			}
			return false, c.requestState(resume)
		})
		// The request says so once the problem lasted (progress is written
		// once it lasted 2 s).
		c.eventually("the request to say why its route cannot be published", 30*time.Second, func() (bool, string) {
			state := c.requestState(resume)
			return strings.Contains(state, "creating Gateway late-gateways/"), state
		})
		// While the order is stuck, cmctl shows why, from the request.
		status := c.cmctl("status", "certificate", resume.Name, "-n", resume.Namespace)
		t.Logf("cmctl status certificate %s while its route cannot be published:\n%s", resume.Name, status)
		for _, want := range []string{"CertificateRequest:", "Ready: False", "resume.example.com: publishing routes", "creating Gateway late-gateways/", "rbac.gatewayNamespaces", "NotPresented"} {
			if !strings.Contains(status, want) {
				t.Errorf("cmctl status output lacks %q", want)
			}
		}
		// The request's message and its Events say "Signing still in
		// progress" once each, not twice in a row.
		if n := strings.Count(status, "Signing still in progress. Reason: Signing still in progress."); n > 0 {
			t.Errorf("cmctl status repeats issuer-lib's pending prefix %d times", n)
		}
		if !strings.Contains(status, "Signing still in progress. Reason: resume.example.com") {
			t.Errorf("cmctl status lacks the pending message once prefixed")
		}

		t.Logf("order %s is pending; killing the controller", orderURL)
		first := c.controller
		first.Kill()

		// The platform team creates the namespace and lets the
		// controller write challenge routes there (helm upgrade with the
		// namespace added to rbac.gatewayNamespaces).
		c.create(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "late-gateways"}})
		c.applyChartRBAC("rbac.gatewayNamespaces={" + gatewayNamespace + ",late-gateways}")
		c.startController()
		elapsed := c.waitReady(resume, 90*time.Second)
		c.verifySecret(resume, "resume.example.com")

		order := &v1alpha1.ACMEOrder{}
		if err := c.cl.Get(ctx, client.ObjectKey{Namespace: appNamespace, Name: orderName}, order); err != nil {
			t.Fatal(err)
		}
		if order.Status.URL != orderURL {
			t.Fatalf("the restarted controller placed a new order %s instead of resuming %s", order.Status.URL, orderURL)
		}
		placed := 0
		for _, p := range []string{first.Log(), c.controller.Log()} {
			for _, line := range strings.Split(p, "\n") {
				if strings.Contains(line, "ACME order created") && strings.Contains(line, `"name":"`+orderName+`"`) {
					placed++
				}
			}
		}
		if placed != 1 {
			t.Errorf("the two controller processes placed %d orders for the request, want 1", placed)
		}
		t.Logf("resumed order %s; Ready %s after creation (including the restart)", orderURL, elapsed.Round(time.Millisecond))
		c.waitNothingLeft()
	})

	t.Run("a wildcard Certificate fails with a message naming HTTP-01 and the wildcard", func(t *testing.T) {
		wild := c.certificate("wild", "pebble", "*.example.com")
		var msg string
		c.eventually("the wildcard request to fail", 30*time.Second, func() (bool, string) {
			var list cmapi.CertificateRequestList
			if err := c.cl.List(ctx, &list, client.InNamespace(appNamespace)); err != nil {
				return false, err.Error()
			}
			for _, cr := range list.Items {
				if !metav1.IsControlledBy(&cr, wild) {
					continue
				}
				for _, cond := range cr.Status.Conditions {
					if cond.Type == cmapi.CertificateRequestConditionReady && cond.Reason == cmapi.CertificateRequestReasonFailed {
						msg = cond.Message
						return true, msg
					}
				}
			}
			return false, c.requestState(wild)
		})
		t.Logf("failure message: %s", msg)
		for _, want := range []string{"HTTP-01", "wildcard", "*.example.com"} {
			if !strings.Contains(msg, want) {
				t.Errorf("message lacks %q", want)
			}
		}
		var orders v1alpha1.ACMEOrderList
		if err := c.cl.List(ctx, &orders, client.InNamespace(appNamespace)); err != nil {
			t.Fatal(err)
		}
		for _, o := range orders.Items {
			if slices.Contains(o.Spec.DNSNames, "*.example.com") {
				t.Errorf("an ACME order %s was created for the wildcard", o.Name)
			}
		}
		if left := c.ourObjectsLeft(); len(left) > 0 {
			t.Errorf("objects were created for the wildcard: %v", left)
		}
	})
}

func isReady(crt *cmapi.Certificate) bool {
	for _, cond := range crt.Status.Conditions {
		if cond.Type == cmapi.CertificateConditionReady {
			return cond.Status == cmmeta.ConditionTrue
		}
	}
	return false
}
