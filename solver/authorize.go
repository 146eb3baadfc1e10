package solver

import (
	"context"
	"fmt"
	"strings"

	istionet "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/istio-acme/istio-acme-issuer/api/v1alpha1"
)

// +kubebuilder:rbac:groups=istio-acme.io,resources=hostnamegrants,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch

// HostAuthorizer decides the tenancy rule for every front door: our
// issuers' requests (before any order), cert-manager Challenges of our
// IngressClasses and the Gateway shim's Certificates, and each challenge
// again before its routes are planned.
type HostAuthorizer struct {
	// Client reads Gateways, HostnameGrants and Namespaces, from the cache.
	Client client.Reader
	// Discovery finds the gateway workloads the CA reaches.
	Discovery *GatewayDiscovery
}

// Authorize returns why namespace may not get some of the names through
// the solver's gateway workloads, or "" when it may get all of them.
// gatewaysField names the solver's gateways setting in messages.
func (a *HostAuthorizer) Authorize(ctx context.Context, namespace string, sol v1alpha1.IstioHTTP01Solver, gatewaysField string, names []string) (string, error) {
	var grants v1alpha1.HostnameGrantList
	if err := a.Client.List(ctx, &grants); err != nil {
		return "", fmt.Errorf("listing HostnameGrants: %w", err)
	}
	var nsLabels map[string]string
	readLabels := func() (map[string]string, error) {
		if nsLabels == nil {
			ns := &corev1.Namespace{}
			if err := a.Client.Get(ctx, client.ObjectKey{Name: namespace}, ns); err != nil {
				return nil, fmt.Errorf("reading namespace %s for the HostnameGrants' namespaceSelector: %w", namespace, err)
			}
			nsLabels = ns.Labels
			if nsLabels == nil {
				nsLabels = map[string]string{}
			}
		}
		return nsLabels, nil
	}
	var mine []v1alpha1.HostnameGrantSpec
	for _, g := range grants.Items {
		ok, err := grantsNamespace(g.Spec, namespace, readLabels)
		if err != nil {
			return "", fmt.Errorf("HostnameGrant %s: %w", g.Name, err)
		}
		if ok {
			mine = append(mine, g.Spec)
		}
	}

	var pending []string
	for _, n := range names {
		if !grantedTo(mine, n) {
			pending = append(pending, n)
		}
	}
	if len(pending) == 0 {
		return "", nil
	}

	workloads, discovery := a.workloads(ctx, sol, gatewaysField)
	if len(workloads) == 0 {
		return fmt.Sprintf("whether namespace %s may get %s cannot be told: %s", namespace, strings.Join(pending, ", "), discovery), nil
	}
	gateways, err := a.usersGateways(ctx)
	if err != nil {
		return "", err
	}
	var refusals []string
	for _, n := range pending {
		if why := refusal(namespace, n, gateways, workloads); why != "" {
			refusals = append(refusals, why)
		}
	}
	return strings.Join(refusals, "; "), nil
}

func grantedTo(grants []v1alpha1.HostnameGrantSpec, name string) bool {
	for _, g := range grants {
		if grantsName(g, name) {
			return true
		}
	}
	return false
}

// refusal says why the rule refuses the name to the namespace on these
// workloads, or is empty.
func refusal(namespace, name string, gateways []*istionet.Gateway, workloads []*GatewayWorkload) string {
	listed, refusing := istioAdmits(gateways, workloads, namespace, name)
	var on []string
	for _, w := range workloads {
		on = append(on, w.Describe())
	}
	grant := fmt.Sprintf("grant the name to namespace %s with a HostnameGrant (spec.namespaces: [%s], spec.dnsNames: [%s])", namespace, namespace, name)
	switch {
	case !listed:
		return fmt.Sprintf("namespace %s may not get %s: no Gateway server on %s lists it, so Istio lets no namespace serve it there yet; create the Gateway that serves it (the request is decided again when it appears), or %s",
			namespace, name, strings.Join(on, ", "), grant)
	case len(refusing) > 0:
		s := refusing[0]
		return fmt.Sprintf("namespace %s may not get %s: %s lists it and does not admit VirtualServices of namespace %s; the Gateway's owner admits %s there (add %s/%s to that server's hosts), or %s",
			namespace, name, s.describe(), namespace, namespace, namespace, name, grant)
	}
	return ""
}

// workloads discovers the solver's gateway workloads; the message says why
// some could not be found.
func (a *HostAuthorizer) workloads(ctx context.Context, sol v1alpha1.IstioHTTP01Solver, gatewaysField string) ([]*GatewayWorkload, string) {
	if len(sol.Gateways) == 0 {
		return nil, gatewaysField + " is empty"
	}
	var out []*GatewayWorkload
	var problems []string
	for i, target := range sol.Gateways {
		w, err := a.Discovery.Workload(ctx, target)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s[%d]: %v", gatewaysField, i, err))
			continue
		}
		out = append(out, w)
	}
	return out, strings.Join(problems, "; ")
}

// usersGateways lists the Gateways this controller did not create, from
// the cache without copies: they are only read.
func (a *HostAuthorizer) usersGateways(ctx context.Context) ([]*istionet.Gateway, error) {
	sel, err := notOurs()
	if err != nil {
		return nil, err
	}
	var gws istionet.GatewayList
	if err := a.Client.List(ctx, &gws, sel, client.UnsafeDisableDeepCopy); err != nil {
		return nil, fmt.Errorf("listing Gateways: %w", err)
	}
	return gws.Items, nil
}

// UsersGatewaysSource watches the Gateways this controller did not create
// and hands every change to h: the tenancy rule reads them.
func UsersGatewaysSource(mgr manager.Manager, h handler.EventHandler) source.Source {
	return source.Kind(mgr.GetCache(), client.Object(&istionet.Gateway{}), h, predicate.NewPredicateFuncs(func(o client.Object) bool {
		return o.GetLabels()[LabelManagedBy] != ManagedByValue
	}))
}
