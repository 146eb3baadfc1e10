package issuer

import (
	"context"
	"fmt"

	issuerapi "github.com/cert-manager/issuer-lib/api/v1alpha1"
	"github.com/cert-manager/issuer-lib/controllers/signer"
	"k8s.io/apimachinery/pkg/api/equality"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/istio-acme/istio-acme-issuer/api/v1alpha1"
)

// Check registers the issuer's ACME account, or recovers it, and records the
// account in the issuer's status. issuer-lib marks the issuer Ready when it
// returns nil and shows the error's message otherwise.
func (s *Signer) Check(ctx context.Context, obj issuerapi.Issuer) error {
	iss, ok := obj.(v1alpha1.ACMEIssuerObject)
	if !ok {
		return fmt.Errorf("unexpected issuer type %T", obj)
	}
	if err := s.confined(iss); err != nil {
		// Nothing is asked of the CA for settings the platform refuses.
		return signer.PermanentError{Err: err}
	}
	acct, err := s.accounts.register(ctx, iss)
	if err != nil {
		return err
	}
	spec := iss.GetSpec()
	want := &v1alpha1.ACMEAccountStatus{URI: acct.uri, Server: spec.Server, Email: spec.Email}
	if !equality.Semantic.DeepEqual(iss.GetStatus().Account, want) {
		base := iss.DeepCopyObject().(v1alpha1.ACMEIssuerObject)
		iss.GetStatus().Account = want
		if err := s.client.Status().Patch(ctx, iss, client.MergeFrom(base)); err != nil {
			return fmt.Errorf("recording the ACME account in the issuer's status: %w", err)
		}
		log.FromContext(ctx).Info("ACME account ready", "account", acct.uri, "server", spec.Server)
	}
	return nil
}

// confined returns why a namespaced issuer's solver settings are not ones
// the platform allows namespaced issuers, or nil.
func (s *Signer) confined(iss v1alpha1.ACMEIssuerObject) error {
	if _, namespaced := iss.(*v1alpha1.ACMEIssuer); !namespaced || s.namespacedPolicy == nil {
		return nil
	}
	if why := s.namespacedPolicy(iss.GetSpec().Solver.Istio); why != "" {
		return fmt.Errorf("ACMEIssuer %s/%s: %s", iss.GetNamespace(), iss.GetName(), why)
	}
	return nil
}
