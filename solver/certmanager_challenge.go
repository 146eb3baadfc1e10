package solver

import (
	"context"
	"fmt"
	"time"

	cmacme "github.com/cert-manager/cert-manager/pkg/apis/acme/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/istio-acme/istio-acme-issuer/api/v1alpha1"
)

// +kubebuilder:rbac:groups=acme.cert-manager.io,resources=challenges,verbs=get;list;watch
// +kubebuilder:rbac:groups=networking.k8s.io,resources=ingressclasses,verbs=get;list;watch
// +kubebuilder:rbac:groups=istio-acme.io,resources=istiosolverclasses,verbs=get;list;watch
// +kubebuilder:rbac:groups=istio-acme.io,resources=acmechallenges,verbs=create;delete

// LabelCertManagerChallenge carries the UID of the cert-manager Challenge an
// ACMEChallenge, and the routes published for it, answer.
const LabelCertManagerChallenge = "istio-acme.io/cert-manager-challenge"

// CertManagerChallengeReconciler answers the HTTP-01 Challenges of
// cert-manager's own ACME issuers whose http01.ingress solver names an
// IngressClass of ours. For each Challenge cert-manager is working on it
// keeps an ACMEChallenge of the same name, owned by the Challenge, which the
// ChallengeReconciler routes and the token server answers like any other;
// from the Challenge's creation when cert-manager will schedule it next.
// It only reads cert-manager's objects: their status and finalizers stay
// cert-manager's, and the ACMEChallenge goes when the Challenge reaches a
// final state or is deleted.
type CertManagerChallengeReconciler struct {
	Client client.Client
	Events events.EventRecorder
	// Workers is the number of Challenges worked on at once.
	Workers int
	// TokenService is this controller's token Service, where the routes of
	// an IngressClass without spec.parameters go.
	TokenService v1alpha1.TokenServiceReference
}

// SetupWithManager registers the reconciler.
func (r *CertManagerChallengeReconciler) SetupWithManager(mgr manager.Manager) error {
	// An IngressClass or IstioSolverClass created after a Challenge that
	// names it wakes the Challenges: nothing else would.
	byClass := handler.EnqueueRequestsFromMapFunc(r.challengesOfClass)
	gk := cmacme.SchemeGroupVersion.WithKind(cmacme.ChallengeKind).GroupKind()
	if _, err := mgr.GetRESTMapper().RESTMapping(gk, cmacme.SchemeGroupVersion.Version); err != nil {
		return fmt.Errorf("cert-manager's Challenge kind (%s/%s) is not served by the API server (%w): install cert-manager with its CRDs, or turn this off with --cert-manager-challenges=false (chart value certManager.acmeChallenges: false)",
			cmacme.SchemeGroupVersion, cmacme.ChallengeKind, err)
	}
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &cmacme.Challenge{}, challengeDNSNameIndex, indexChallengeDNSName); err != nil {
		return fmt.Errorf("indexing cert-manager Challenges by DNS name: %w", err)
	}
	return builder.ControllerManagedBy(mgr).
		For(&cmacme.Challenge{}).
		// A Challenge that ends lets the next one for its name go first.
		Watches(&cmacme.Challenge{}, handler.EnqueueRequestsFromMapFunc(r.challengesOfName)).
		Owns(&v1alpha1.ACMEChallenge{}).
		Watches(&networkingv1.IngressClass{}, byClass).
		Watches(&v1alpha1.IstioSolverClass{}, byClass).
		Named("cert-manager-challenge").
		WithOptions(controller.Options{MaxConcurrentReconciles: max(r.Workers, 1)}).
		Complete(r)
}

// challengesOfClass lists the open HTTP-01 Challenges whose solver names an
// IngressClass: the one changed, or any, for an IstioSolverClass.
func (r *CertManagerChallengeReconciler) challengesOfClass(ctx context.Context, obj client.Object) []reconcile.Request {
	var list cmacme.ChallengeList
	if err := r.Client.List(ctx, &list); err != nil {
		log.FromContext(ctx).Error(err, "listing cert-manager Challenges")
		return nil
	}
	_, isIngressClass := obj.(*networkingv1.IngressClass)
	var out []reconcile.Request
	for _, ch := range list.Items {
		name := ingressClassOf(&ch)
		if name == "" || (isIngressClass && name != obj.GetName()) {
			continue
		}
		out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: ch.Namespace, Name: ch.Name}})
	}
	return out
}

// challengeDNSNameIndex indexes cert-manager's Challenges by spec.dnsName.
const challengeDNSNameIndex = "istio-acme.io/challenge-dns-name"

func indexChallengeDNSName(obj client.Object) []string {
	ch, ok := obj.(*cmacme.Challenge)
	if !ok || ch.Spec.DNSName == "" {
		return nil
	}
	return []string{ch.Spec.DNSName}
}

// challengesOfName lists the other open Challenges of the changed one's
// name whose solver names an IngressClass.
func (r *CertManagerChallengeReconciler) challengesOfName(ctx context.Context, obj client.Object) []reconcile.Request {
	changed, ok := obj.(*cmacme.Challenge)
	if !ok || !finished(changed) {
		return nil
	}
	var list cmacme.ChallengeList
	if err := r.Client.List(ctx, &list, client.MatchingFields{challengeDNSNameIndex: changed.Spec.DNSName}); err != nil {
		log.FromContext(ctx).Error(err, "listing cert-manager Challenges", "dnsName", changed.Spec.DNSName)
		return nil
	}
	var out []reconcile.Request
	for _, ch := range list.Items {
		if ch.UID != changed.UID && !finished(&ch) && ingressClassOf(&ch) != "" {
			out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: ch.Namespace, Name: ch.Name}})
		}
	}
	return out
}

// queuedBehind names the open Challenge of the same name and type that
// cert-manager schedules before ch (one it processes, or an older one), or
// is empty when ch is next. cert-manager never validates two Challenges of
// one name at once, whatever their solvers: their routes would compete for
// the same host.
func (r *CertManagerChallengeReconciler) queuedBehind(ctx context.Context, ch *cmacme.Challenge) (string, error) {
	var list cmacme.ChallengeList
	if err := r.Client.List(ctx, &list, client.MatchingFields{challengeDNSNameIndex: ch.Spec.DNSName}); err != nil {
		return "", fmt.Errorf("listing cert-manager Challenges for %s: %w", ch.Spec.DNSName, err)
	}
	for _, other := range list.Items {
		if other.UID == ch.UID || other.Spec.Type != ch.Spec.Type || finished(&other) {
			continue
		}
		if other.Status.Processing || scheduledFirst(&other, ch) {
			return other.Namespace + "/" + other.Name, nil
		}
	}
	return "", nil
}

// scheduledFirst reports whether cert-manager's scheduler takes a before b:
// the older first (ties, which it leaves to chance, by namespace and name,
// so that only one of them is published).
func scheduledFirst(a, b *cmacme.Challenge) bool {
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return a.CreationTimestamp.Before(&b.CreationTimestamp)
	}
	if a.Namespace != b.Namespace {
		return a.Namespace < b.Namespace
	}
	return a.Name < b.Name
}

// ingressClassOf returns the IngressClass an HTTP-01 Challenge's ingress
// solver names (ingressClassName, or the older class field), or "".
func ingressClassOf(ch *cmacme.Challenge) string {
	if ch.Spec.Type != cmacme.ACMEChallengeTypeHTTP01 || ch.Spec.Solver.HTTP01 == nil || ch.Spec.Solver.HTTP01.Ingress == nil {
		return ""
	}
	ing := ch.Spec.Solver.HTTP01.Ingress
	switch {
	case ing.IngressClassName != nil:
		return *ing.IngressClassName
	case ing.Class != nil:
		return *ing.Class
	}
	return ""
}

// finished reports whether cert-manager is done with a Challenge: the CA
// judged it, or cert-manager gave up on it.
func finished(ch *cmacme.Challenge) bool {
	switch ch.Status.State {
	case cmacme.Valid, cmacme.Invalid, cmacme.Expired, cmacme.Errored:
		return true
	}
	return !ch.DeletionTimestamp.IsZero()
}

// Reconcile keeps the Challenge's ACMEChallenge while cert-manager works on
// it, and removes it afterwards.
func (r *CertManagerChallengeReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	ch := &cmacme.Challenge{}
	err := r.Client.Get(ctx, req.NamespacedName, ch)
	if apierrors.IsNotFound(err) {
		// Gone: the garbage collector deletes its ACMEChallenge too; do it
		// now, so the routes do not wait for it.
		return reconcile.Result{}, r.removeMirror(ctx, req.NamespacedName)
	}
	if err != nil {
		return reconcile.Result{}, err
	}
	if finished(ch) {
		return reconcile.Result{}, r.removeMirror(ctx, req.NamespacedName)
	}
	className := ingressClassOf(ch)
	if className == "" {
		return reconcile.Result{}, r.removeMirror(ctx, req.NamespacedName)
	}
	class := &networkingv1.IngressClass{}
	if err := r.Client.Get(ctx, client.ObjectKey{Name: className}, class); client.IgnoreNotFound(err) != nil {
		return reconcile.Result{}, err
	}
	if class.Spec.Controller != v1alpha1.SolverIngressController {
		// Another ingress controller's class, or none by that name (yet:
		// the class watch brings the Challenge back if it appears). Routes
		// published while the class was ours go.
		return reconcile.Result{}, r.removeMirror(ctx, req.NamespacedName)
	}

	if !ch.Status.Processing {
		// Not scheduled yet. cert-manager schedules the oldest open
		// Challenge of a name and only one at a time: that one's route is
		// published now, so that it is live before cert-manager's first
		// self-check, which it runs a moment after scheduling and retries
		// only 10 s later. The others of the name wait their turn.
		behind, err := r.queuedBehind(ctx, ch)
		if err != nil {
			return reconcile.Result{}, err
		}
		if behind != "" {
			log.FromContext(ctx).V(1).Info("waiting for cert-manager's Challenge of the same name", "host", ch.Spec.DNSName, "before", behind)
			return reconcile.Result{}, r.removeMirror(ctx, req.NamespacedName)
		}
	}

	settings, solverClass, problem, err := r.settings(ctx, class)
	if err != nil {
		return reconcile.Result{}, err
	}
	if problem != "" {
		r.Events.Eventf(ch, nil, corev1.EventTypeWarning, "SolverClassInvalid", "Present", "%s", problem)
		return reconcile.Result{RequeueAfter: time.Minute}, nil
	}

	existing := &v1alpha1.ACMEChallenge{}
	err = r.Client.Get(ctx, req.NamespacedName, existing)
	switch {
	case err == nil:
		if owner := certManagerChallengeOf(existing); owner != nil && owner.UID != ch.UID {
			// Left by an earlier Challenge of the same name.
			return reconcile.Result{RequeueAfter: time.Second}, r.removeMirror(ctx, req.NamespacedName)
		}
		if !metav1.IsControlledBy(existing, ch) {
			r.Events.Eventf(ch, nil, corev1.EventTypeWarning, "NameTaken", "Present",
				"ACMEChallenge %s/%s exists and does not belong to this Challenge, so its routes cannot be published; delete that ACMEChallenge if nothing uses it", ch.Namespace, ch.Name)
			return reconcile.Result{RequeueAfter: time.Minute}, nil
		}
		return reconcile.Result{}, nil
	case !apierrors.IsNotFound(err):
		return reconcile.Result{}, err
	}
	mirror := &v1alpha1.ACMEChallenge{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: ch.Namespace,
			Name:      ch.Name,
			Labels:    map[string]string{LabelManagedBy: ManagedByValue, LabelCertManagerChallenge: string(ch.UID)},
			// Not blocking the Challenge's deletion: that would need the
			// right to update cert-manager's finalizers, and the routes'
			// own finalizer keeps nothing from being left.
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: cmacme.SchemeGroupVersion.String(),
				Kind:       cmacme.ChallengeKind,
				Name:       ch.Name,
				UID:        ch.UID,
				Controller: ptr.To(true),
			}},
		},
		Spec: v1alpha1.ACMEChallengeSpec{
			DNSName:          ch.Spec.DNSName,
			Token:            ch.Spec.Token,
			Key:              ch.Spec.Key,
			URL:              ch.Spec.URL,
			AuthorizationURL: ch.Spec.AuthorizationURL,
			Solver:           settings,
			IngressClass:     className,
			SolverClass:      solverClass,
		},
	}
	if err := r.Client.Create(ctx, mirror); err != nil && !apierrors.IsAlreadyExists(err) {
		return reconcile.Result{}, fmt.Errorf("creating ACMEChallenge %s/%s for Challenge %s/%s: %w", mirror.Namespace, mirror.Name, ch.Namespace, ch.Name, err)
	}
	log.FromContext(ctx).Info("answering cert-manager Challenge through Istio", "host", ch.Spec.DNSName, "ingressClass", className, "solverClass", solverClass)
	return reconcile.Result{}, nil
}

// settings returns the routing settings of one of our IngressClasses: its
// IstioSolverClass, or the defaults when it names none. problem says what is
// wrong with the class, naming the field and the fix.
func (r *CertManagerChallengeReconciler) settings(ctx context.Context, class *networkingv1.IngressClass) (v1alpha1.IstioHTTP01Solver, string, string, error) {
	p := class.Spec.Parameters
	if p == nil {
		settings := v1alpha1.DefaultIstioHTTP01Solver()
		if r.TokenService.Name != "" {
			settings.TokenService = r.TokenService
		}
		return settings, "", "", nil
	}
	if ptr.Deref(p.APIGroup, "") != v1alpha1.GroupVersion.Group || p.Kind != "IstioSolverClass" {
		return v1alpha1.IstioHTTP01Solver{}, "", fmt.Sprintf("IngressClass %s spec.parameters names %s %s/%s; set apiGroup: %s, kind: IstioSolverClass, or remove spec.parameters for the default settings",
			class.Name, p.Kind, ptr.Deref(p.APIGroup, "core"), p.Name, v1alpha1.GroupVersion.Group), nil
	}
	if s := ptr.Deref(p.Scope, networkingv1.IngressClassParametersReferenceScopeCluster); s != networkingv1.IngressClassParametersReferenceScopeCluster {
		return v1alpha1.IstioHTTP01Solver{}, "", fmt.Sprintf("IngressClass %s spec.parameters.scope is %s; IstioSolverClass is cluster-scoped: set scope: Cluster and remove namespace", class.Name, s), nil
	}
	sc := &v1alpha1.IstioSolverClass{}
	if err := r.Client.Get(ctx, client.ObjectKey{Name: p.Name}, sc); err != nil {
		if apierrors.IsNotFound(err) {
			return v1alpha1.IstioHTTP01Solver{}, "", fmt.Sprintf("IngressClass %s spec.parameters names IstioSolverClass %s, which does not exist; create it, or remove spec.parameters for the default settings", class.Name, p.Name), nil
		}
		return v1alpha1.IstioHTTP01Solver{}, "", "", err
	}
	return *sc.Spec.DeepCopy(), sc.Name, "", nil
}

// removeMirror deletes the ACMEChallenge of the Challenge with this key, if
// it has one.
func (r *CertManagerChallengeReconciler) removeMirror(ctx context.Context, key types.NamespacedName) error {
	mirror := &v1alpha1.ACMEChallenge{}
	if err := r.Client.Get(ctx, key, mirror); err != nil {
		return client.IgnoreNotFound(err)
	}
	if certManagerChallengeOf(mirror) == nil || !mirror.DeletionTimestamp.IsZero() {
		return nil
	}
	err := r.Client.Delete(ctx, mirror, client.Preconditions{UID: &mirror.UID})
	if err == nil {
		log.FromContext(ctx).Info("challenge finished; removing its routes", "host", mirror.Spec.DNSName)
	}
	return client.IgnoreNotFound(err)
}

// certManagerChallengeOf returns a reference to the cert-manager Challenge
// an ACMEChallenge answers, or nil: Events go to it, where `kubectl
// describe challenge` and `cmctl status` show them.
func certManagerChallengeOf(ch *v1alpha1.ACMEChallenge) *corev1.ObjectReference {
	owner := metav1.GetControllerOf(ch)
	if owner == nil || owner.Kind != cmacme.ChallengeKind || owner.APIVersion != cmacme.SchemeGroupVersion.String() {
		return nil
	}
	return &corev1.ObjectReference{APIVersion: owner.APIVersion, Kind: owner.Kind, Namespace: ch.Namespace, Name: owner.Name, UID: owner.UID}
}
