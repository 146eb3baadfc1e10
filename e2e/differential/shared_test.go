package differential

import (
	"fmt"
	"testing"
	"time"

	istionet "istio.io/client-go/pkg/apis/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/istio-acme/istio-acme-issuer/api/v1alpha1"
	"github.com/istio-acme/istio-acme-issuer/solver"
)

// checkShared plans the order's second name beside the first. Where both
// are published and fit one VirtualService (as the controller would share
// it), Istio must route the CA's request for each name to the token on
// every workload its plan routes, and move no other request. It reports
// whether the layout had such a pair.
func checkShared(t *testing.T, l *layout) (bool, error) {
	type part struct {
		ch     *v1alpha1.ACMEChallenge
		plan   *solver.Plan
		member solver.SharedMember
	}
	var parts []part
	for _, ch := range []*v1alpha1.ACMEChallenge{l.Challenge, l.Sibling} {
		plan, refusal := planFor(l, ch)
		if refusal != nil {
			return false, nil
		}
		m, ok := solver.SharedMemberOf(ch, solver.BuildRoutes(ch, plan.Workloads, plan.Split, nil))
		if !ok {
			return false, nil
		}
		parts = append(parts, part{ch, plan, m})
	}
	if !parts[0].member.Fits(parts[1].member) {
		return false, nil
	}
	shared := solver.BuildSharedVirtualService(l.Challenge.Namespace, l.Challenge.Spec.Order, []solver.SharedMember{parts[0].member, parts[1].member})
	shared.CreationTimestamp = metav1.NewTime(epoch.Add(time.Minute))
	routes := solver.Routes{VirtualServices: []*istionet.VirtualService{shared}}
	exists := func(resource, namespace string) bool { return secretExistsIn(l.Secrets, resource, namespace) }
	cas := []caRequest{{l.Challenge.Spec.DNSName, l.Challenge.Spec.Token}, {l.Sibling.Spec.DNSName, l.Sibling.Spec.Token}}
	for i, w := range l.Workloads {
		before, err := translate(t, l, w, nil)
		if err != nil {
			return true, fmt.Errorf("translating the users' objects: %w", err)
		}
		after, err := translate(t, l, w, &routes)
		if err != nil {
			before.Close()
			return true, fmt.Errorf("translating with the shared VirtualService: %w", err)
		}
		httpPort, httpsPort := w.httpPorts()
		for _, p := range parts {
			for _, pw := range p.plan.Workloads {
				if pw.Index != i {
					continue
				}
				if err := caReaches(t, after, httpPort, httpsPort, p.ch.Spec.DNSName, p.ch.Spec.Token, w.Namespace, exists); err != nil {
					err = fmt.Errorf("shared VirtualService %v of %s and %s: workload %d: %w", shared.Spec.Hosts, describe(parts[0].plan), describe(parts[1].plan), i, err)
					before.Close()
					after.Close()
					return true, err
				}
			}
		}
		err = usersUnchanged(t, before, after, l, cas, w.Namespace, exists)
		before.Close()
		after.Close()
		if err != nil {
			return true, fmt.Errorf("shared VirtualService %v of %s and %s: workload %d: a user's request moves: %w", shared.Spec.Hosts, describe(parts[0].plan), describe(parts[1].plan), i, err)
		}
	}
	return true, nil
}
