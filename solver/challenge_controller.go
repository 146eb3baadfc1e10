package solver

import (
	"context"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"time"

	istionet "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/istio-acme/istio-acme-issuer/api/v1alpha1"
	"github.com/istio-acme/istio-acme-issuer/internal/istiomodel"
	"github.com/istio-acme/istio-acme-issuer/internal/kubeutil"
	"github.com/istio-acme/istio-acme-issuer/internal/metrics"
)

// +kubebuilder:rbac:groups=istio-acme.io,resources=acmechallenges,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=istio-acme.io,resources=acmechallenges/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=istio-acme.io,resources=acmechallenges/finalizers,verbs=update
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;create;delete,namespace=temporary-https

// ChallengeReconciler publishes the routes of each ACMEChallenge and removes
// them when the challenge is deleted.
type ChallengeReconciler struct {
	Client client.Client
	Events events.EventRecorder
	// Workers is the number of challenges worked on at once.
	Workers int
	// APIReader, when set, confirms with the API server a route the cache
	// does not have before it is published again.
	APIReader client.Reader
	// Discovery finds the gateway workloads the routes are planned for.
	Discovery *GatewayDiscovery
	// SelfCheck fetches the token through the gateways before the
	// challenge counts as presented.
	SelfCheck *SelfCheck
	// Presentations, when set, hand the challenges of our orders to the
	// signer in memory (see Presentations).
	Presentations *Presentations
	// Authorizer decides the tenancy rule before anything is planned.
	Authorizer *HostAuthorizer
	// Provenance, when set, leaves alone the challenges that no order of
	// ours and no cert-manager Challenge of our classes owns.
	Provenance *Provenance
	// NamespacedPolicy, when set, confines the settings of the challenges
	// of namespaced ACMEIssuers' orders.
	NamespacedPolicy *NamespacedIssuerPolicy

	// refused are the challenges the tenancy rule refuses: a change of
	// users' Gateways or of HostnameGrants wakes them.
	refused kubeutil.KeySet

	passes  passMemo
	sharing sharing
	plans   planSlots
	models  istiomodel.Cache
}

// SetupWithManager registers the reconciler.
func (r *ChallengeReconciler) SetupWithManager(mgr manager.Manager) error {
	// A deleted route of an open challenge wakes the challenge, which
	// publishes it again.
	deleted := builder.WithPredicates(predicate.Funcs{
		CreateFunc:  func(event.CreateEvent) bool { return false },
		UpdateFunc:  func(event.UpdateEvent) bool { return false },
		GenericFunc: func(event.GenericEvent) bool { return false },
	})
	owner := handler.EnqueueRequestsFromMapFunc(challengesOfRoute)
	refused := handler.EnqueueRequestsFromMapFunc(r.refused.Requests)
	b := builder.ControllerManagedBy(mgr).
		For(&v1alpha1.ACMEChallenge{}, builder.WithPredicates(notStatusOnly))
	for _, k := range routeKinds {
		b = b.Watches(k.newObject(), owner, deleted)
	}
	// A shared VirtualService seen created wakes the members that wait
	// for it: they find it in the cache, as written.
	created := builder.WithPredicates(predicate.Funcs{
		CreateFunc:  func(e event.CreateEvent) bool { return e.Object.GetLabels()[LabelSharedByOrder] != "" },
		UpdateFunc:  func(event.UpdateEvent) bool { return false },
		DeleteFunc:  func(event.DeleteEvent) bool { return false },
		GenericFunc: func(event.GenericEvent) bool { return false },
	})
	b = b.Watches(virtualServiceRoutes.newObject(), handler.EnqueueRequestsFromMapFunc(r.sharing.waitingMembers), created)
	return b.WatchesRawSource(UsersGatewaysSource(mgr, refused)).
		// A sibling's plan wakes the challenges that wait for it.
		WatchesRawSource(source.Channel(r.sharing.wakeChannel(), &handler.EnqueueRequestForObject{})).
		Watches(&v1alpha1.HostnameGrant{}, refused).
		Named("acmechallenge").
		WithOptions(controller.Options{MaxConcurrentReconciles: max(r.Workers, 1)}).
		Complete(r)
}

// notStatusOnly drops the update events of a challenge whose status alone
// changed: this controller's own status writes would otherwise wake it at
// once and retry a failing self-check without waiting for its backoff, and
// the order's writes (state, validation times) change nothing here.
var notStatusOnly = predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
	o, n := e.ObjectOld, e.ObjectNew
	return o.GetGeneration() != n.GetGeneration() ||
		!o.GetDeletionTimestamp().Equal(n.GetDeletionTimestamp()) ||
		!slices.Equal(o.GetFinalizers(), n.GetFinalizers()) ||
		!maps.Equal(o.GetLabels(), n.GetLabels()) ||
		!maps.Equal(o.GetAnnotations(), n.GetAnnotations())
}}

// Reconcile makes the challenge's routes exist while it lives, and removes
// them before it goes.
func (r *ChallengeReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	ch := &v1alpha1.ACMEChallenge{}
	if err := r.Client.Get(ctx, req.NamespacedName, ch); err != nil {
		if apierrors.IsNotFound(err) {
			r.refused.Remove(req.NamespacedName)
		}
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	logger := log.FromContext(ctx).WithValues("host", ch.Spec.DNSName)

	if ch.DeletionTimestamp != nil {
		if !controllerutil.ContainsFinalizer(ch, v1alpha1.ChallengeRoutesFinalizer) {
			return reconcile.Result{}, nil
		}
		if err := r.deleteRoutes(ctx, ch); err != nil {
			return reconcile.Result{}, err
		}
		if err := r.releaseTemporaryCertificate(ctx, ch); err != nil {
			return reconcile.Result{}, err
		}
		logger.V(1).Info("removed challenge routes")
		controllerutil.RemoveFinalizer(ch, v1alpha1.ChallengeRoutesFinalizer)
		return reconcile.Result{}, client.IgnoreNotFound(r.Client.Update(ctx, ch))
	}

	if r.Provenance != nil {
		why, err := r.Provenance.Check(ctx, ch)
		if err != nil {
			return reconcile.Result{}, err
		}
		if why != "" {
			// Reported, never routed; a route an earlier pass published
			// goes. The owner may only be late in the cache: look again.
			if err := r.deleteRoutes(ctx, ch); err != nil {
				return reconcile.Result{}, err
			}
			return r.notYet(ctx, ch, notPresented{metrics.NotPresentedNotOurs, fmt.Sprintf("ACMEChallenge %s/%s is not answered: %s", ch.Namespace, ch.Name, why)}, nil)
		}
	}

	if pr, wait, ok := r.Presentations.lasting(ch); ok {
		// Presented in memory, and the signer told: the status says so
		// once it lasted, unless a route went meanwhile.
		gone, err := r.missingRoute(ctx, ch, pr.routes)
		switch {
		case err != nil:
			return reconcile.Result{}, err
		case gone == "" && pr.accepted:
			// The signer writes it if the CA's validation lasts.
			return reconcile.Result{}, nil
		case gone == "" && wait > 0:
			return reconcile.Result{RequeueAfter: wait}, nil
		case gone == "":
			return reconcile.Result{}, r.recordPresented(ctx, ch, pr.message, pr.routes)
		}
		r.Presentations.forget(ch)
		logger.Info("a route of the open challenge was deleted; publishing it again", "object", gone)
		r.eventf(ch, corev1.EventTypeWarning, "RouteDeleted", "%s was deleted while the challenge is open; publishing it again", gone)
	}
	if ch.Status.Presented {
		r.Presentations.forget(ch) // the status says it now
		gone, err := r.missingRoute(ctx, ch, ch.Status.Routes)
		if err != nil || gone == "" {
			return reconcile.Result{}, err
		}
		// Someone deleted a route while the CA may still be validating:
		// publish it again rather than let the validation fail.
		logger.Info("a route of the open challenge was deleted; publishing it again", "object", gone)
		r.eventf(ch, corev1.EventTypeWarning, "RouteDeleted", "%s was deleted while the challenge is open; publishing it again", gone)
	}
	// The tenancy rule first: a name the requester may not serve is never
	// routed nor self-checked, and what an earlier pass published goes.
	if r.Authorizer != nil {
		why, err := r.Authorizer.Authorize(ctx, RequesterNamespace(ch), ch.Spec.Solver, settingsField(ch, "gateways"), []string{ch.Spec.DNSName})
		if err != nil {
			return reconcile.Result{}, err
		}
		if why != "" {
			return r.refuse(ctx, ch, metrics.NotPresentedHostNotAllowed, "HostNotAllowed", why)
		}
		r.refused.Remove(req.NamespacedName)
	}
	if why, err := r.confined(ctx, ch); err != nil || why != "" {
		if err != nil {
			return reconcile.Result{}, err
		}
		return r.refuse(ctx, ch, metrics.NotPresentedIssuerSettings, "IssuerSettingsNotAllowed", why)
	}

	if wait, err := r.stillWaiting(ctx, ch); err != nil || wait > 0 {
		return reconcile.Result{RequeueAfter: wait}, err
	}
	// Plan where the route goes from the users' Gateways and
	// VirtualServices as Istio would translate them, then publish it.
	plan, workloads, blocked, refusal, err := r.plan(ctx, ch)
	if err != nil {
		return reconcile.Result{}, err
	}
	if refusal != nil {
		blocked = &notPresented{refusal.Reason, refusal.Message}
		if refusal.MissingCredential != nil {
			// Outside the planning slot: this reads the request's objects.
			waiting, err := r.firstIssuance(ctx, ch, refusal)
			if err != nil {
				return reconcile.Result{}, err
			}
			if waiting != nil {
				blocked = waiting
			}
		}
	}
	if blocked != nil {
		r.standAside(ch)
		return r.notYet(ctx, ch, *blocked, nil)
	}
	temp := map[int]*TemporaryHTTPS{}
	for _, w := range plan.Workloads {
		if w.OwnHTTPS {
			if temp[w.Index], err = r.temporaryHTTPS(ctx, ch, w.Index, workloads[w.Index].Namespace); err != nil {
				return reconcile.Result{}, err
			}
		}
	}
	routes := BuildRoutes(ch, plan.Workloads, plan.Split, temp)
	routes, wait, err := r.share(ctx, ch, routes)
	if err != nil || wait > 0 {
		return reconcile.Result{RequeueAfter: wait}, err
	}
	if routes.NeedsFinalizer() {
		if err := r.addFinalizer(ctx, ch); err != nil {
			return reconcile.Result{}, err
		}
	}
	var refs []v1alpha1.ObjectReference
	for _, sec := range routes.Secrets {
		if err := r.ensure(ctx, sec, &corev1.Secret{}); err != nil {
			return reconcile.Result{}, r.fail(ctx, ch, fmt.Errorf("creating Secret %s/%s: %w", sec.Namespace, sec.Name, kubeutil.ForbiddenHint(err, kubeutil.TemporaryHTTPSHint)))
		}
		refs = append(refs, v1alpha1.ObjectReference{APIVersion: "v1", Kind: "Secret", Namespace: sec.Namespace, Name: sec.Name})
	}
	for _, k := range routeKinds {
		for _, obj := range k.built(routes) {
			if err := r.ensure(ctx, obj, k.newObject()); err != nil {
				return reconcile.Result{}, r.fail(ctx, ch, fmt.Errorf("creating %s %s/%s: %w", k.kind, obj.GetNamespace(), obj.GetName(), kubeutil.ForbiddenHint(err, k.forbiddenHint)))
			}
			refs = append(refs, k.reference(obj))
		}
	}
	if err := r.deleteStale(ctx, ch, routes); err != nil {
		return reconcile.Result{}, err
	}
	// The siblings that wait for a shared VirtualService are woken as the
	// cache sees it created (waitingMembers): woken before, they would
	// find it missing and create it again.
	if !slices.ContainsFunc(routes.VirtualServices, isShared) {
		if err := r.leaveShared(ctx, ch); err != nil {
			return reconcile.Result{}, err
		}
	}
	msg := plan.Describe(ch, workloads)

	planned := msg
	if passed, ok := r.passes.recent(ch.UID, planned); ok {
		msg = passed
	} else {
		var addrs []string
		for _, pw := range plan.Workloads {
			for _, addr := range workloads[pw.Index].Addresses {
				if err := r.SelfCheck.Check(ctx, addr, ch.Spec.DNSName, ch.Spec.Token, ch.Spec.Key); err != nil {
					return r.notYet(ctx, ch, notPresented{metrics.NotPresentedSelfCheck, msg + "; self-check failed: " + err.Error()}, refs)
				}
				addrs = append(addrs, addr)
			}
		}
		msg += "; self-check passed through the ingress gateway at " + strings.Join(addrs, ", ")
		if ch.Spec.Solver.SelfCheckThroughDNS {
			ips, err := r.SelfCheck.CheckThroughDNS(ctx, ch.Spec.DNSName, ch.Spec.Token, ch.Spec.Key)
			if err != nil {
				return r.notYet(ctx, ch, notPresented{metrics.NotPresentedSelfCheckDNS, msg + "; self-check through DNS failed: " + err.Error()}, refs)
			}
			msg += " and through DNS (" + ch.Spec.DNSName + " resolves to " + strings.Join(ips, ", ") + ")"
		}
		r.passes.remember(ch.UID, planned, msg)
	}

	if r.Presentations != nil && ch.Spec.Order != "" && !ch.Status.Presented && len(routes.Secrets) == 0 {
		// Our signer learns it in memory; the status is written only if
		// the challenge is still open once that lasted. Not with a
		// temporary certificate's Secret: the status is where the
		// finalizer finds it.
		if r.Presentations.Present(ch, msg, refs) {
			logger.Info("published challenge routes", "routes", refs)
		}
		r.passes.forget(ch.UID)
		return reconcile.Result{RequeueAfter: r.Presentations.quiet}, nil
	}
	if err := r.recordPresented(ctx, ch, msg, refs); err != nil {
		return reconcile.Result{}, err
	}
	logger.Info("published challenge routes", "routes", refs)
	return reconcile.Result{}, nil
}

// recordPresented writes that the challenge is presented, with its routes.
func (r *ChallengeReconciler) recordPresented(ctx context.Context, ch *v1alpha1.ACMEChallenge, msg string, refs []v1alpha1.ObjectReference) error {
	wasPresented := ch.Status.Presented
	if err := r.updateStatus(ctx, ch, "", func(st *v1alpha1.ACMEChallengeStatus) {
		st.Presented = true
		st.Message = msg
		st.Routes = withRecordedSecrets(st.Routes, refs)
	}); err != nil {
		return err
	}
	r.passes.forget(ch.UID)
	r.Presentations.forget(ch)
	if !wasPresented {
		// Says where the CA's request goes through Istio on a cert-manager
		// Challenge it answers, where its users look (it shows nothing of
		// ours otherwise). An ACMEChallenge's status says the same.
		r.ownerEventf(ch, corev1.EventTypeNormal, "RoutesPublished", "%s", msg)
	}
	return nil
}

// addFinalizer puts the challenge's finalizer in place before anything it
// cannot own is written, so that nothing outlives it. Routes in its own
// namespace need none: they are owned by it.
func (r *ChallengeReconciler) addFinalizer(ctx context.Context, ch *v1alpha1.ACMEChallenge) error {
	if controllerutil.ContainsFinalizer(ch, v1alpha1.ChallengeRoutesFinalizer) {
		return nil
	}
	controllerutil.AddFinalizer(ch, v1alpha1.ChallengeRoutesFinalizer)
	if err := r.Client.Update(ctx, ch); err != nil {
		return fmt.Errorf("adding the finalizer of ACMEChallenge %s/%s: %w", ch.Namespace, ch.Name, err)
	}
	return nil
}

// confined returns why the challenge, of a namespaced ACMEIssuer's order,
// uses settings the platform does not allow namespaced issuers, or "".
func (r *ChallengeReconciler) confined(ctx context.Context, ch *v1alpha1.ACMEChallenge) (string, error) {
	if r.NamespacedPolicy == nil || ch.Spec.Order == "" {
		return "", nil
	}
	order := &v1alpha1.ACMEOrder{}
	if err := r.Client.Get(ctx, client.ObjectKey{Namespace: ch.Namespace, Name: ch.Spec.Order}, order); err != nil {
		if apierrors.IsNotFound(err) {
			return "the challenge's ACMEOrder " + ch.Spec.Order + " does not exist", nil
		}
		return "", fmt.Errorf("reading ACMEOrder %s/%s: %w", ch.Namespace, ch.Spec.Order, err)
	}
	if order.Spec.IssuerRef.Kind != "ACMEIssuer" {
		return "", nil
	}
	if why := r.NamespacedPolicy.Check(ch.Spec.Solver); why != "" {
		return fmt.Sprintf("ACMEIssuer %s/%s: %s", ch.Namespace, order.Spec.IssuerRef.Name, why), nil
	}
	return "", nil
}

// refuse removes whatever routes the challenge has and records why it may
// not be routed once, with an Event (on a cert-manager Challenge too). The
// challenge is decided again when users' Gateways or the HostnameGrants
// change, and at least on the usual backoff.
func (r *ChallengeReconciler) refuse(ctx context.Context, ch *v1alpha1.ACMEChallenge, reason, eventReason, why string) (reconcile.Result, error) {
	r.refused.Add(client.ObjectKeyFromObject(ch))
	r.standAside(ch)
	if err := r.deleteRoutes(ctx, ch); err != nil {
		return reconcile.Result{}, err
	}
	retry := reconcile.Result{RequeueAfter: retryDelay(time.Since(ch.CreationTimestamp.Time))}
	if ch.Status.Message == why && !ch.Status.Presented {
		return retry, nil
	}
	log.FromContext(ctx).Info("the challenge may not be routed", "reason", why)
	metrics.NotPresented.WithLabelValues(reason).Inc()
	if reason == metrics.NotPresentedHostNotAllowed && certManagerChallengeOf(ch) != nil {
		metrics.HostsNotAllowed.WithLabelValues(metrics.SourceSolver).Inc()
	}
	r.eventf(ch, corev1.EventTypeWarning, eventReason, "%s", why)
	if err := r.updateStatus(ctx, ch, eventReason, func(st *v1alpha1.ACMEChallengeStatus) {
		st.Presented = false
		st.Message = why
	}); err != nil {
		return reconcile.Result{}, err
	}
	return retry, nil
}

// eventf records an Event on the challenge and, for one answering a
// cert-manager Challenge, on that Challenge, where its users look.
func (r *ChallengeReconciler) eventf(ch *v1alpha1.ACMEChallenge, eventType, reason, format string, args ...any) {
	r.Events.Eventf(ch, nil, eventType, reason, "Present", format, args...)
	r.ownerEventf(ch, eventType, reason, format, args...)
}

// ownerEventf records an Event on the cert-manager Challenge the challenge
// answers, if any.
func (r *ChallengeReconciler) ownerEventf(ch *v1alpha1.ACMEChallenge, eventType, reason, format string, args ...any) {
	if owner := certManagerChallengeOf(ch); owner != nil {
		r.Events.Eventf(owner, ch, eventType, reason, "Present", format, args...)
	}
}

// plan discovers the solver's gateway workloads and plans the challenge's
// routes on them from the users' Gateways and VirtualServices. It returns
// why the gateway workloads cannot be found, or the planner's refusal.
func (r *ChallengeReconciler) plan(ctx context.Context, ch *v1alpha1.ACMEChallenge) (*Plan, []*GatewayWorkload, *notPresented, *Refusal, error) {
	sol := ch.Spec.Solver
	if len(sol.Gateways) == 0 {
		return nil, nil, &notPresented{metrics.NotPresentedGatewayDiscovery, settingsField(ch, "gateways") + " is empty; list the ingress gateway workloads, or remove the field for Istio's default ingress gateway"}, nil, nil
	}
	workloads := make([]*GatewayWorkload, len(sol.Gateways))
	for i, target := range sol.Gateways {
		w, err := r.Discovery.Workload(ctx, target)
		if err != nil {
			return nil, nil, &notPresented{metrics.NotPresentedGatewayDiscovery, fmt.Sprintf("%s[%d]: %v", settingsField(ch, "gateways"), i, err)}, nil, nil
		}
		workloads[i] = w
	}
	release, err := r.plans.acquire(ctx)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	defer release()
	gateways, virtualServices, err := r.usersIstioObjects(ctx)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	creds := SecretCredentials{Reader: r.Client}
	plan, refusal := PlanRoutes(PlanInput{
		Challenge:       ch,
		Gateways:        gateways,
		VirtualServices: virtualServices,
		Workloads:       workloads,
		Credential: func(namespace, name string) CredentialState {
			return creds.State(ctx, namespace, name)
		},
		Now:    time.Now(),
		Models: &r.models,
	})
	if refusal != nil {
		return nil, nil, nil, refusal, nil
	}
	return plan, workloads, nil, nil, nil
}

// usersIstioObjects lists the Gateways and VirtualServices this controller
// did not create, from the informer cache and without copies: the planner
// only reads them.
func (r *ChallengeReconciler) usersIstioObjects(ctx context.Context) ([]*istionet.Gateway, []*istionet.VirtualService, error) {
	sel, err := notOurs()
	if err != nil {
		return nil, nil, err
	}
	var gws istionet.GatewayList
	if err := r.Client.List(ctx, &gws, sel, client.UnsafeDisableDeepCopy); err != nil {
		return nil, nil, fmt.Errorf("listing Gateways: %w", err)
	}
	var vss istionet.VirtualServiceList
	if err := r.Client.List(ctx, &vss, sel, client.UnsafeDisableDeepCopy); err != nil {
		return nil, nil, fmt.Errorf("listing VirtualServices: %w", err)
	}
	return gws.Items, vss.Items, nil
}

// withRecordedSecrets returns refs plus the Secrets recorded before: Secrets
// live outside the labelled Istio objects the finalizer finds by label, so a
// recorded one is kept until the challenge ends.
func withRecordedSecrets(recorded, refs []v1alpha1.ObjectReference) []v1alpha1.ObjectReference {
	out := slices.Clone(refs)
	for _, r := range recorded {
		if r.Kind == "Secret" && !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	return out
}

// temporaryHTTPS returns the certificate of the challenge's temporary HTTPS
// server: the one already stored, or a new self-signed one for the host.
func (r *ChallengeReconciler) temporaryHTTPS(ctx context.Context, ch *v1alpha1.ACMEChallenge, index int, namespace string) (*TemporaryHTTPS, error) {
	existing := &corev1.Secret{}
	name := TemporaryHTTPSSecretName(ch, index)
	err := r.Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, existing)
	if err == nil {
		return &TemporaryHTTPS{Namespace: namespace, CertPEM: existing.Data[corev1.TLSCertKey], KeyPEM: existing.Data[corev1.TLSPrivateKeyKey]}, nil
	}
	if !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("reading Secret %s/%s: %w", namespace, name, kubeutil.ForbiddenHint(err, kubeutil.TemporaryHTTPSHint))
	}
	certPEM, keyPEM, err := selfSignedCertificate(ch.Spec.DNSName)
	if err != nil {
		return nil, err
	}
	return &TemporaryHTTPS{Namespace: namespace, CertPEM: certPEM, KeyPEM: keyPEM}, nil
}

// notPresented is why a challenge's routes are not published or do not
// work yet: a metrics reason and the message for its status.
type notPresented struct {
	reason, message string
}

// notYet records why the challenge is not presented yet and looks again
// soon, less often as the challenge ages. Istio may just not have pushed the
// new route: only a failure that lasts is worth a status write and an Event.
func (r *ChallengeReconciler) notYet(ctx context.Context, ch *v1alpha1.ACMEChallenge, np notPresented, refs []v1alpha1.ObjectReference) (reconcile.Result, error) {
	why := np.message
	age := time.Since(ch.CreationTimestamp.Time)
	log.FromContext(ctx).V(1).Info("challenge not presented yet", "reason", why, "age", age)
	if age >= quietPresent && ch.Status.Message != why {
		log.FromContext(ctx).Info("challenge not presented yet", "reason", why)
		r.eventf(ch, corev1.EventTypeWarning, "NotPresented", "%s", why)
		metrics.NotPresented.WithLabelValues(np.reason).Inc()
		if err := r.updateStatus(ctx, ch, "NotPresented", func(st *v1alpha1.ACMEChallengeStatus) {
			st.Message = why
			if refs != nil {
				// Without new routes the recorded ones stay: they are what
				// the finalizer deletes.
				st.Routes = withRecordedSecrets(st.Routes, refs)
			}
		}); err != nil {
			return reconcile.Result{}, err
		}
	}
	return reconcile.Result{RequeueAfter: retryDelay(age)}, nil
}

// quietPresent is how long presentation failures are only logged: a route
// push usually takes istiod well under this.
const quietPresent = 2 * time.Second

// retryDelay grows with the challenge's age: quick while a route push is
// likely in flight, gentle once something is really wrong.
func retryDelay(age time.Duration) time.Duration {
	return min(max(age/5, 100*time.Millisecond), 10*time.Second)
}

// ensure creates want, or updates the existing object when a user or a
// previous version changed its spec or labels. The cache is asked first: a
// challenge whose self-check is retried (Istio has not pushed the route
// yet) then costs the API server no write at all.
func (r *ChallengeReconciler) ensure(ctx context.Context, want, existing client.Object) error {
	if err := r.Client.Get(ctx, client.ObjectKeyFromObject(want), existing); err == nil && sameRoute(want, existing) {
		return nil
	}
	err := r.Client.Create(ctx, want)
	if err == nil || !apierrors.IsAlreadyExists(err) {
		return err
	}
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := r.Client.Get(ctx, client.ObjectKeyFromObject(want), existing); err != nil {
			return err
		}
		if sameRoute(want, existing) {
			return nil
		}
		want.SetResourceVersion(existing.GetResourceVersion())
		return r.Client.Update(ctx, want)
	})
}

func sameRoute(want, existing client.Object) bool {
	if !reflect.DeepEqual(want.GetLabels(), existing.GetLabels()) {
		return false
	}
	if _, ok := want.(*corev1.Secret); ok {
		return true // written once: its certificate must not change under the gateway
	}
	if k := routeKindOf(want); k != nil {
		return k.sameSpec(want, existing)
	}
	return false
}

// deleteRoutes removes every object labelled for this challenge, whether or
// not its status recorded it (a crash may have come between create and
// status update). The Gateways and VirtualServices are found in the cache
// and deleted one by one: a delete-collection would make the API server
// list them from storage on every pass, and a challenge's deletion is
// reconciled again as each route's deletion is seen. A route the cache has
// not seen yet is left to the orphan sweep.
func (r *ChallengeReconciler) deleteRoutes(ctx context.Context, ch *v1alpha1.ACMEChallenge) error {
	for _, ref := range ch.Status.Routes {
		if ref.Kind != "Secret" {
			continue
		}
		// The status is writable by whoever may write the challenge: only
		// a Secret this challenge created (our labels, its key) is deleted.
		sec := &corev1.Secret{}
		if err := r.Client.Get(ctx, client.ObjectKey{Namespace: ref.Namespace, Name: ref.Name}, sec); err != nil {
			if apierrors.IsNotFound(err) || apierrors.IsForbidden(err) {
				continue // gone, or where no Secret of ours can be
			}
			return fmt.Errorf("reading Secret %s/%s of challenge %s/%s: %w", ref.Namespace, ref.Name, ch.Namespace, ch.Name, err)
		}
		if sec.Labels[LabelManagedBy] != ManagedByValue || sec.Labels[LabelChallenge] != ChallengeKey(ch.Namespace, ch.Name) {
			log.FromContext(ctx).Info("not deleting a Secret the challenge lists but did not create", "secret", ref.Namespace+"/"+ref.Name)
			continue
		}
		if err := r.Client.Delete(ctx, sec, client.Preconditions{UID: &sec.UID}); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("deleting Secret %s/%s of challenge %s/%s: %w", ref.Namespace, ref.Name, ch.Namespace, ch.Name, err)
		}
	}
	if err := r.leaveShared(ctx, ch); err != nil {
		return err
	}
	own, err := r.ownRoutes(ctx, ch)
	if err != nil {
		return err
	}
	slices.Reverse(own) // what binds a Gateway goes before it
	for _, obj := range own {
		if err := r.Client.Delete(ctx, obj); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("deleting %s/%s of challenge %s/%s: %w", obj.GetNamespace(), obj.GetName(), ch.Namespace, ch.Name, err)
		}
	}
	return nil
}

// ownRoutes lists the challenge's route objects, each kind in its
// namespace (routeKind.namespace), from the cache by their labels, in the
// order of routeKinds.
func (r *ChallengeReconciler) ownRoutes(ctx context.Context, ch *v1alpha1.ACMEChallenge) ([]client.Object, error) {
	sel := client.MatchingLabels{LabelManagedBy: ManagedByValue, LabelChallenge: ChallengeKey(ch.Namespace, ch.Name)}
	var out []client.Object
	for _, k := range routeKinds {
		objs, err := k.list(ctx, r.Client, client.InNamespace(k.namespace(ch)), sel)
		if err != nil {
			return nil, fmt.Errorf("listing the %ss of challenge %s/%s: %w", k.kind, ch.Namespace, ch.Name, err)
		}
		out = append(out, objs...)
	}
	return out, nil
}

// missingRoute names a Gateway or VirtualService of the challenge's routes
// that no longer exists, or is empty.
func (r *ChallengeReconciler) missingRoute(ctx context.Context, ch *v1alpha1.ACMEChallenge, routes []v1alpha1.ObjectReference) (string, error) {
	for _, ref := range routes {
		k := routeKindNamed(ref.Kind)
		if k == nil {
			continue // a Secret
		}
		obj := k.newObject()
		key := client.ObjectKey{Namespace: ref.Namespace, Name: ref.Name}
		err := r.Client.Get(ctx, key, obj)
		if apierrors.IsNotFound(err) && r.APIReader != nil {
			// The cache may just not have seen a route created a moment ago.
			err = r.APIReader.Get(ctx, key, obj)
		}
		switch {
		case apierrors.IsNotFound(err):
			return ref.Kind + " " + ref.Namespace + "/" + ref.Name, nil
		case err != nil:
			return "", fmt.Errorf("reading %s %s/%s of challenge %s/%s: %w", ref.Kind, ref.Namespace, ref.Name, ch.Namespace, ch.Name, err)
		}
	}
	return "", nil
}

// deleteStale removes the challenge's own Gateways and VirtualServices that
// the current routes no longer use, say after a user's Gateway started
// serving the host on a workload where ours did: two servers for one host
// must not linger.
func (r *ChallengeReconciler) deleteStale(ctx context.Context, ch *v1alpha1.ACMEChallenge, keep Routes) error {
	own, err := r.ownRoutes(ctx, ch)
	if err != nil {
		return err
	}
	var stale []client.Object
	for _, obj := range own {
		kept := routeKindOf(obj).built(keep)
		if !slices.ContainsFunc(kept, func(k client.Object) bool { return k.GetName() == obj.GetName() }) {
			stale = append(stale, obj)
		}
	}
	for _, obj := range stale {
		if err := r.Client.Delete(ctx, obj); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("deleting %s/%s, which challenge %s/%s no longer uses: %w", obj.GetNamespace(), obj.GetName(), ch.Namespace, ch.Name, err)
		}
	}
	return nil
}

func (r *ChallengeReconciler) fail(ctx context.Context, ch *v1alpha1.ACMEChallenge, cause error) error {
	if ch.Status.Message != cause.Error() {
		metrics.NotPresented.WithLabelValues(metrics.NotPresentedPublish).Inc()
	}
	if err := r.updateStatus(ctx, ch, "PresentFailed", func(st *v1alpha1.ACMEChallengeStatus) { st.Message = cause.Error() }); err != nil {
		return fmt.Errorf("%w (and recording it failed: %v)", cause, err)
	}
	r.eventf(ch, corev1.EventTypeWarning, "PresentFailed", "%s", cause.Error())
	return cause
}

// updateStatus writes the challenge's status; problem is the reason of the
// Event that says why it is not presented ("" when it is).
func (r *ChallengeReconciler) updateStatus(ctx context.Context, ch *v1alpha1.ACMEChallenge, problem string, mutate func(*v1alpha1.ACMEChallengeStatus)) error {
	return kubeutil.UpdateStatus(ctx, r.Client, ch, func(ch *v1alpha1.ACMEChallenge) {
		mutate(&ch.Status)
		ch.SyncReadyCondition(problem)
	})
}
