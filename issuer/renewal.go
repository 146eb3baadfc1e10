package issuer

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
	"math/rand/v2"
	"strings"
	"time"

	apiutil "github.com/cert-manager/cert-manager/pkg/api/util"
	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	"github.com/cert-manager/cert-manager/third_party/forked/acme"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/istio-acme/istio-acme-issuer/api/v1alpha1"
	"github.com/istio-acme/istio-acme-issuer/internal/kubeutil"
	"github.com/istio-acme/istio-acme-issuer/internal/metrics"
)

// Cluster-wide in the chart while renewalInfo.enabled (role "renewals").
// +kubebuilder:rbac:groups=cert-manager.io,resources=certificates,verbs=get,namespace=renewals
// +kubebuilder:rbac:groups=cert-manager.io,resources=certificates/status,verbs=patch,namespace=renewals

// RenewalReasonWindow is the reason of the Issuing condition the controller
// sets on a Certificate whose CA wants it renewed.
const RenewalReasonWindow = "RenewalWindow"

// Renewals follows the CA's renewal information (RFC 9773) for the
// certificates our issuers signed, one ACMERenewal per Certificate, and asks
// cert-manager to renew a Certificate when the time picked in the CA's
// window comes, as `cmctl renew` does: cert-manager stays the owner of the
// Secret and of the Certificate's history.
type Renewals struct {
	Signer *Signer
	// Certificates reads Certificates uncached: one is read only when a
	// renewal is due, so the controller holds no cache of every
	// Certificate of the cluster.
	Certificates client.Reader
	// MinInterval and MaxInterval bound the wait between two readings of a
	// certificate's renewal information, whatever the CA's Retry-After
	// says; a reading that failed is retried after MinInterval.
	MinInterval, MaxInterval time.Duration
	// Rand picks the renewal time in the window; nil is math/rand.
	Rand func() float64
	// Clock defaults to the Signer's.
	Clock clock.PassiveClock
}

// defaultRetryAfter is the wait between readings when the CA gives none.
const defaultRetryAfter = 6 * time.Hour

// SetupWithManager registers the renewal controller. It wakes on a new
// ACMERenewal and on a newly recorded certificate (whose first reading the
// signer did); otherwise it requeues itself for the next check or the
// renewal time.
func (r *Renewals) SetupWithManager(mgr manager.Manager) error {
	// The signer reads a certificate's first renewal information as it
	// records it, in the same write.
	r.Signer.checkRenewal = r.check
	return builder.ControllerManagedBy(mgr).
		Named("acmerenewal").
		For(&v1alpha1.ACMERenewal{}, builder.WithPredicates(predicate.Funcs{
			UpdateFunc: func(e event.UpdateEvent) bool {
				o, ok1 := e.ObjectOld.(*v1alpha1.ACMERenewal)
				n, ok2 := e.ObjectNew.(*v1alpha1.ACMERenewal)
				// Not on its own writes: without a status subresource
				// every write changes the generation.
				return !ok1 || !ok2 || o.Status.CertID != n.Status.CertID || o.Spec != n.Spec
			},
			DeleteFunc: func(event.DeleteEvent) bool { return false },
		})).
		Complete(r)
}

// Reconcile reads the CA's renewal information when a check is due, and
// asks for the renewal when its time came.
func (r *Renewals) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	ren := &v1alpha1.ACMERenewal{}
	if err := r.Signer.client.Get(ctx, req.NamespacedName, ren); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	if ren.Status.CertID == "" {
		return reconcile.Result{}, nil
	}
	clk := r.Clock
	if clk == nil {
		clk = r.Signer.clock
	}
	now := clk.Now()
	next := ren.DeepCopy()
	st := &next.Status
	if st.NextCheck == nil || !now.Before(st.NextCheck.Time) {
		r.check(ctx, next, now)
	}
	if st.RenewAt != nil && !now.Before(st.RenewAt.Time) && st.RenewalRequestedAt == nil {
		if err := r.renew(ctx, next, now); err != nil {
			return reconcile.Result{}, err
		}
	}
	if err := kubeutil.Update(ctx, r.Signer.client, ren, func(o *v1alpha1.ACMERenewal) { o.Status = next.Status }); err != nil {
		return reconcile.Result{}, fmt.Errorf("recording the renewal information in ACMERenewal %s: %w", req.NamespacedName, err)
	}
	return reconcile.Result{RequeueAfter: max(r.wake(st, now).Sub(now), time.Second)}, nil
}

// wake is when to look again: the next check, or the renewal time if it
// comes first. A renewal time passed without a renewal asked for (the
// Certificate does not hold the recorded certificate yet) is looked at again
// after as long as it has been waiting, from 10 s up to MinInterval.
func (r *Renewals) wake(st *v1alpha1.ACMERenewalStatus, now time.Time) time.Time {
	wake := st.NextCheck.Time
	if st.RenewAt == nil || st.RenewalRequestedAt != nil {
		return wake
	}
	at := st.RenewAt.Time
	if !now.Before(at) {
		at = now.Add(min(max(now.Sub(at), 10*time.Second), r.MinInterval))
	}
	if at.Before(wake) {
		return at
	}
	return wake
}

// check reads the renewal information and records the window, the time
// picked in it (again only when the window moved) and the next check.
func (r *Renewals) check(ctx context.Context, ren *v1alpha1.ACMERenewal, now time.Time) {
	st := &ren.Status
	kind, name := ren.Spec.IssuerRef.Kind, issuerName(ren.Namespace, ren.Spec.IssuerRef)
	nowT := metav1.NewTime(now)
	st.LastCheck = &nowT
	info, err := r.renewalInfo(ctx, ren)
	switch {
	case errors.Is(err, acme.ErrCADoesNotSupportARI):
		metrics.RenewalInfo.WithLabelValues(kind, name, metrics.RenewalInfoUnsupported).Inc()
		st.NextCheck = &metav1.Time{Time: now.Add(r.MaxInterval)}
		st.Message = "the CA offers no renewal information; cert-manager renews this certificate at the Certificate's renewal time"
		return
	case err != nil:
		metrics.RenewalInfo.WithLabelValues(kind, name, metrics.RenewalInfoError).Inc()
		retry := now.Add(r.MinInterval)
		st.NextCheck = &metav1.Time{Time: retry}
		st.Message = fmt.Sprintf("reading the CA's renewal information: %v; trying again at %s", err, retry.UTC().Format(time.RFC3339))
		log.FromContext(ctx).Info("reading the CA's renewal information failed", "error", err.Error())
		return
	}
	metrics.RenewalInfo.WithLabelValues(kind, name, metrics.RenewalInfoRead).Inc()
	window := &v1alpha1.RenewalWindow{Start: metav1.NewTime(info.SuggestedWindow.Start), End: metav1.NewTime(info.SuggestedWindow.End)}
	if st.SuggestedWindow == nil || !st.SuggestedWindow.Start.Equal(&window.Start) || !st.SuggestedWindow.End.Equal(&window.End) || st.RenewAt == nil {
		st.SuggestedWindow = window
		st.RenewAt = &metav1.Time{Time: r.pick(info.SuggestedWindow.Start, info.SuggestedWindow.End, now)}
	}
	st.ExplanationURL = info.ExplanationURL
	wait := info.RetryAfter
	if wait <= 0 {
		wait = defaultRetryAfter
	}
	st.NextCheck = &metav1.Time{Time: now.Add(min(max(wait, r.MinInterval), r.MaxInterval))}
	if st.RenewalRequestedAt == nil {
		st.Message = fmt.Sprintf("the CA suggests renewing between %s and %s; renewing at %s",
			window.Start.UTC().Format(time.RFC3339), window.End.UTC().Format(time.RFC3339), st.RenewAt.UTC().Format(time.RFC3339))
	}
}

// pick is a uniformly random time in [start, end) (RFC 9773 section 4.2);
// a window in the past means now.
func (r *Renewals) pick(start, end, now time.Time) time.Time {
	if !end.After(start) {
		return start
	}
	f := rand.Float64
	if r.Rand != nil {
		f = r.Rand
	}
	at := start.Add(time.Duration(f() * float64(end.Sub(start)))).Truncate(time.Second)
	if at.Before(now) {
		return now.Truncate(time.Second)
	}
	return at
}

func (r *Renewals) renewalInfo(ctx context.Context, ren *v1alpha1.ACMERenewal) (*acme.RenewalInfoResponse, error) {
	iss, err := r.issuer(ctx, ren)
	if err != nil {
		return nil, err
	}
	acct, err := r.Signer.accounts.forSigning(ctx, iss)
	if err != nil {
		return nil, err
	}
	cert, err := certOfARIID(ren.Status.CertID)
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, caRequestTimeout)
	defer cancel()
	info, err := acct.client.GetRenewalInfo(cctx, cert)
	if err != nil && !errors.Is(err, acme.ErrCADoesNotSupportARI) {
		var ae *acme.Error
		if errors.As(err, &ae) {
			return nil, fmt.Errorf("the CA answered %s", problemText(ae))
		}
		return nil, describeTransport(err)
	}
	return info, err
}

func (r *Renewals) issuer(ctx context.Context, ren *v1alpha1.ACMERenewal) (v1alpha1.ACMEIssuerObject, error) {
	ref := ren.Spec.IssuerRef
	key := issuerKeyOf(ren.Namespace, ref)
	var iss v1alpha1.ACMEIssuerObject = &v1alpha1.ACMEIssuer{}
	if key.Namespace == "" {
		iss = &v1alpha1.ACMEClusterIssuer{}
	}
	if err := r.Signer.client.Get(ctx, key, iss); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("%s %s, which signed the certificate, does not exist", ref.Kind, strings.TrimPrefix(key.String(), "/"))
		}
		return nil, err
	}
	return iss, nil
}

// renew asks cert-manager to renew the Certificate, once per certificate,
// and only while the Certificate still uses one of our issuers and holds
// the certificate recorded here.
func (r *Renewals) renew(ctx context.Context, ren *v1alpha1.ACMERenewal, now time.Time) error {
	st := &ren.Status
	crt := &cmapi.Certificate{}
	if err := r.Certificates.Get(ctx, types.NamespacedName{Namespace: ren.Namespace, Name: ren.Spec.Certificate}, crt); err != nil {
		if apierrors.IsNotFound(err) {
			return nil // the garbage collector removes this object next
		}
		return fmt.Errorf("reading Certificate %s/%s: %w", ren.Namespace, ren.Spec.Certificate, kubeutil.ForbiddenHint(err, "the controller's ClusterRole needs get on certificates (cert-manager.io) for renewals from the CA's renewal information; which the chart grants with renewalInfo.enabled, or run the controller with --renewal-info=false"))
	}
	if len(ren.OwnerReferences) != 1 || ren.OwnerReferences[0].UID != crt.UID {
		return nil // a Certificate recreated under the same name; its next issuance records it
	}
	if crt.Spec.IssuerRef.Group != v1alpha1.GroupVersion.Group {
		st.Message = fmt.Sprintf("the Certificate now uses %s %s, not one of our issuers; its renewals are that issuer's", crt.Spec.IssuerRef.Kind, crt.Spec.IssuerRef.Name)
		st.RenewalRequestedAt = &metav1.Time{Time: now}
		return nil
	}
	if crt.Status.NotAfter == nil || !crt.Status.NotAfter.Time.Equal(st.NotAfter.Time) {
		// The Secret may not hold the recorded certificate yet, or holds one
		// another issuer signed: renewing it would renew the wrong one.
		st.Message = fmt.Sprintf("the CA wants certificate %s renewed, but the Certificate does not hold it (its certificate expires %s); looking again at the next check", st.Serial, timeOrNone(crt.Status.NotAfter))
		return nil
	}
	early := crt.Status.RenewalTime == nil || st.RenewAt.Before(crt.Status.RenewalTime)
	requested := metav1.NewTime(now)
	st.RenewalRequestedAt = &requested
	if issuing(crt) {
		st.Message = "the CA's renewal time came while cert-manager was already issuing the Certificate"
		return nil
	}
	why := fmt.Sprintf("the CA suggests renewing certificate %s between %s and %s", st.Serial,
		st.SuggestedWindow.Start.UTC().Format(time.RFC3339), st.SuggestedWindow.End.UTC().Format(time.RFC3339))
	if st.ExplanationURL != "" {
		why += " (" + st.ExplanationURL + ")"
	}
	patched := crt.DeepCopy()
	setIssuing(patched, why)
	if err := r.Signer.client.Status().Patch(ctx, patched, client.MergeFromWithOptions(crt, client.MergeFromWithOptimisticLock{})); err != nil {
		st.RenewalRequestedAt = nil
		if apierrors.IsConflict(err) {
			return fmt.Errorf("the Certificate %s/%s changed meanwhile; asking for its renewal again", crt.Namespace, crt.Name)
		}
		return fmt.Errorf("asking cert-manager to renew Certificate %s/%s: %w", crt.Namespace, crt.Name, kubeutil.ForbiddenHint(err, "the controller's ClusterRole needs patch on certificates/status (cert-manager.io) for renewals from the CA's renewal information; which the chart grants with renewalInfo.enabled, or run the controller with --renewal-info=false"))
	}
	st.Message = "asked cert-manager to renew the Certificate: " + why
	if early {
		metrics.EarlyRenewals.WithLabelValues(ren.Spec.IssuerRef.Kind, issuerName(ren.Namespace, ren.Spec.IssuerRef)).Inc()
		r.event(crt, "RenewalWindow", "renewing before the Certificate's renewal time %s: %s", timeOrNone(crt.Status.RenewalTime), why)
	}
	log.FromContext(ctx).Info("asked cert-manager to renew the certificate", "certificate", crt.Name, "serial", st.Serial, "early", early)
	return nil
}

func (r *Renewals) event(crt *cmapi.Certificate, reason, format string, args ...any) {
	if r.Signer.events == nil {
		return
	}
	ref := &cmapi.Certificate{
		TypeMeta:   metav1.TypeMeta{APIVersion: cmapi.SchemeGroupVersion.String(), Kind: cmapi.CertificateKind},
		ObjectMeta: metav1.ObjectMeta{Namespace: crt.Namespace, Name: crt.Name, UID: crt.UID, ResourceVersion: crt.ResourceVersion},
	}
	r.Signer.events.Eventf(ref, nil, corev1.EventTypeNormal, reason, "Renew", format, args...)
}

func issuing(crt *cmapi.Certificate) bool {
	return apiutil.CertificateHasCondition(crt, cmapi.CertificateCondition{Type: cmapi.CertificateConditionIssuing, Status: cmmeta.ConditionTrue})
}

// setIssuing sets the Issuing condition as `cmctl renew` does, with our
// reason: cert-manager then issues the Certificate again.
func setIssuing(crt *cmapi.Certificate, message string) {
	apiutil.SetCertificateCondition(crt, crt.Generation, cmapi.CertificateConditionIssuing, cmmeta.ConditionTrue,
		RenewalReasonWindow, "Renewal requested by istio-acme-issuer: "+message)
}

// certOfARIID is a certificate carrying just what its ARI identifier is made
// of (authority key identifier and serial), which is all the client reads.
func certOfARIID(id string) (*x509.Certificate, error) {
	aki, serial, ok := strings.Cut(id, ".")
	a, err1 := base64.RawURLEncoding.DecodeString(aki)
	s, err2 := base64.RawURLEncoding.DecodeString(serial)
	if !ok || err1 != nil || err2 != nil || len(a) == 0 || len(s) == 0 {
		return nil, fmt.Errorf("the recorded certificate identifier %q is not an ARI identifier", id)
	}
	return &x509.Certificate{AuthorityKeyId: a, SerialNumber: new(big.Int).SetBytes(s)}, nil
}

func issuerName(namespace string, ref v1alpha1.IssuerReference) string {
	return issuerLabelOf(issuerKeyOf(namespace, ref))
}

func timeOrNone(t *metav1.Time) string {
	if t == nil {
		return "(none)"
	}
	return t.UTC().Format(time.RFC3339)
}
