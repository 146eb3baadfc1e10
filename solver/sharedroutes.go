package solver

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	istioapi "istio.io/api/networking/v1"
	istionet "istio.io/client-go/pkg/apis/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/istio-acme/istio-acme-issuer/api/v1alpha1"
)

// The challenges of one order (the names of one Certificate) whose routes
// are each one VirtualService binding the same Gateways share one
// VirtualService: one route per challenge, owned by all of them, so that
// Istio gets one write when they are published and one when the garbage
// collector removes it after the last of them. Each challenge is still
// planned, judged by the tenancy rule and self-checked on its own; the
// shared object is only the union of what each would have written alone,
// and a union of VirtualServices binding the same Gateways binds exactly
// the virtual hosts the separate ones bind (a route's authority condition
// keeps it to its own name in each).
//
// Siblings learn of each other's plans in memory (sharememo.go): the first
// to plan waits up to shareWait for the others, then goes alone. A challenge whose plan
// no longer fits leaves: its own objects are written first, then its route
// leaves the shared VirtualService (or the VirtualService goes with the
// last member).
const (
	// LabelSharedByOrder marks a shared VirtualService with the
	// ChallengeKey of its order's namespace and name: the orphan sweep
	// compares it with the orders that still have challenges.
	LabelSharedByOrder = "istio-acme.io/shared-by-order"
	// AnnotationSharedMembers lists, as JSON, the challenges of a shared
	// VirtualService and the hosts each binds.
	AnnotationSharedMembers = "istio-acme.io/challenges"

	// shareWait is how long a challenge waits for its siblings' plans
	// before it goes alone: they are created in one pass of the signer.
	shareWait = time.Second
	// sharePartTTL is how long a plan is remembered for the siblings.
	sharePartTTL = 10 * time.Minute
)

// SharedMember is one challenge's part of a shared VirtualService: the
// VirtualService it would have written alone.
type SharedMember struct {
	Name     string
	UID      types.UID
	Hosts    []string
	Route    *istioapi.HTTPRoute
	Gateways []string
}

// sharedName names the shared VirtualService of an order.
func sharedName(namespace, order string) string {
	return "acme-order-" + ChallengeKey(namespace, order)
}

// SharedMemberOf returns the challenge's part when its routes can be
// shared: one VirtualService in its own namespace (so owned by it, see
// BuildRoutes, and in the namespace of every sibling), no Gateway and no
// Secret of its own, and an order.
func SharedMemberOf(ch *v1alpha1.ACMEChallenge, routes Routes) (SharedMember, bool) {
	if ch.Spec.Order == "" || ch.UID == "" || len(routes.Gateways) > 0 || len(routes.Secrets) > 0 || len(routes.VirtualServices) != 1 {
		return SharedMember{}, false
	}
	v := routes.VirtualServices[0]
	if v.Namespace != ch.Namespace || len(v.Spec.Http) != 1 {
		return SharedMember{}, false
	}
	return SharedMember{Name: ch.Name, UID: ch.UID, Hosts: v.Spec.Hosts, Route: v.Spec.Http[0], Gateways: v.Spec.Gateways}, true
}

// Fits tells whether two members (of one order, so in one namespace) can
// share one VirtualService: they bind the same Gateways.
func (m SharedMember) Fits(o SharedMember) bool {
	return slices.Equal(m.Gateways, o.Gateways)
}

// BuildSharedVirtualService returns the VirtualService of an order's
// challenges that share one, members in any order (all of them fit).
func BuildSharedVirtualService(namespace, order string, members []SharedMember) *istionet.VirtualService {
	members = slices.Clone(members)
	slices.SortFunc(members, func(a, b SharedMember) int { return strings.Compare(a.Name, b.Name) })
	hosts := map[string][]string{}
	v := &istionet.VirtualService{ObjectMeta: metav1.ObjectMeta{
		Name:      sharedName(namespace, order),
		Namespace: namespace,
		Labels:    map[string]string{LabelManagedBy: ManagedByValue, LabelSharedByOrder: ChallengeKey(namespace, order)},
	}}
	v.Spec.ExportTo = []string{"*"}
	v.Spec.Gateways = slices.Clone(members[0].Gateways)
	for _, m := range members {
		hosts[m.Name] = m.Hosts
		for _, h := range m.Hosts {
			if !slices.Contains(v.Spec.Hosts, h) {
				v.Spec.Hosts = append(v.Spec.Hosts, h)
			}
		}
		r := proto.Clone(m.Route).(*istioapi.HTTPRoute)
		r.Name = sharedRouteName(namespace, m.Name)
		v.Spec.Http = append(v.Spec.Http, r)
		v.OwnerReferences = append(v.OwnerReferences, metav1.OwnerReference{
			APIVersion: v1alpha1.GroupVersion.String(), Kind: "ACMEChallenge", Name: m.Name, UID: m.UID,
		})
	}
	data, _ := json.Marshal(hosts) // a map of strings cannot fail
	v.Annotations = map[string]string{AnnotationSharedMembers: string(data)}
	return v
}

// sharedRouteName names a member's route: the challenge route's name and
// the member's key, so that each can be told apart and removed.
func sharedRouteName(namespace, name string) string {
	return challengeRouteName + "-" + ChallengeKey(namespace, name)
}

// sharedMembers reads the members back from a shared VirtualService.
func sharedMembers(v *istionet.VirtualService) []SharedMember {
	hosts := map[string][]string{}
	if err := json.Unmarshal([]byte(v.Annotations[AnnotationSharedMembers]), &hosts); err != nil {
		return nil
	}
	var out []SharedMember
	for _, ref := range v.OwnerReferences {
		h, ok := hosts[ref.Name]
		if ref.Kind != "ACMEChallenge" || !ok {
			continue
		}
		i := slices.IndexFunc(v.Spec.Http, func(r *istioapi.HTTPRoute) bool { return r.GetName() == sharedRouteName(v.Namespace, ref.Name) })
		if i < 0 {
			continue
		}
		route := proto.Clone(v.Spec.Http[i]).(*istioapi.HTTPRoute)
		route.Name = challengeRouteName
		out = append(out, SharedMember{Name: ref.Name, UID: ref.UID, Hosts: h, Route: route, Gateways: v.Spec.Gateways})
	}
	return out
}

// share decides whether the challenge's routes go into its order's shared
// VirtualService. It returns the routes to publish (the challenge's own,
// or the shared VirtualService), or how long to wait at most for a
// sibling's plan (its part wakes this challenge sooner).
func (r *ChallengeReconciler) share(ctx context.Context, ch *v1alpha1.ACMEChallenge, routes Routes) (Routes, time.Duration, error) {
	authzs, ok, err := r.orderAuthorizations(ctx, ch)
	if err != nil || !ok {
		return routes, 0, err
	}
	alone := func() (Routes, time.Duration, error) {
		r.standAside(ch)
		return routes, 0, nil
	}
	member, ok := SharedMemberOf(ch, routes)
	if !ok {
		return alone()
	}
	parts := r.sharing.parts(ch)
	if untold(authzs, parts, ch) {
		// A sibling not planned, or not even created yet (the signer
		// creates an order's challenges one authorization at a time, in
		// one pass): likely right behind in the queue. The wait counts
		// from this challenge's first attempt, not its creation, so that
		// a long queue (many Certificates at once) does not end it early.
		// An authorization the CA had validated before gets no challenge:
		// the wait for it ends with shareWait.
		since := time.Now()
		if mine, ok := parts[ch.Spec.AuthorizationURL]; ok && mine.name == ch.Name && mine.waits() {
			since = mine.waitingSince
		}
		if left := shareWait - time.Since(since); left > 0 {
			r.sharing.tell(ch, sharePart{member: member, waitingSince: since})
			return Routes{}, left, nil
		}
		return alone()
	}
	members := []SharedMember{member}
	for _, authz := range authzs {
		if p := parts[authz]; authz != ch.Spec.AuthorizationURL && !p.alone && p.member.Fits(member) {
			members = append(members, p.member)
		}
	}
	if len(members) == 1 {
		return alone()
	}
	// The siblings that wait are woken as the cache sees the
	// VirtualService created (waitingMembers).
	r.sharing.record(ch, sharePart{member: member})
	return Routes{VirtualServices: []*istionet.VirtualService{BuildSharedVirtualService(ch.Namespace, ch.Spec.Order, members)}}, 0, nil
}

// orderAuthorizations returns the authorizations of the challenge's order,
// from the cache; ok is false when the challenge has no order of ours
// (a cert-manager Challenge's) or the order is not there.
func (r *ChallengeReconciler) orderAuthorizations(ctx context.Context, ch *v1alpha1.ACMEChallenge) ([]string, bool, error) {
	if ch.Spec.Order == "" || ch.Spec.AuthorizationURL == "" {
		return nil, false, nil
	}
	order := &v1alpha1.ACMEOrder{}
	if err := r.Client.Get(ctx, orderOf(ch), order); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("reading ACMEOrder %s/%s: %w", ch.Namespace, ch.Spec.Order, err)
	}
	return order.Status.Authorizations, slices.Contains(order.Status.Authorizations, ch.Spec.AuthorizationURL), nil
}

// stillWaiting tells a challenge that waits for its siblings' plans, and
// still misses one, how long to wait at most, without planning itself
// again: its plan is remembered, and planning is the costly part of a
// pass.
func (r *ChallengeReconciler) stillWaiting(ctx context.Context, ch *v1alpha1.ACMEChallenge) (time.Duration, error) {
	parts := r.sharing.parts(ch)
	mine, ok := parts[ch.Spec.AuthorizationURL]
	if !ok || mine.name != ch.Name || !mine.waits() || mine.member.UID != ch.UID {
		return 0, nil
	}
	left := shareWait - time.Since(mine.waitingSince)
	if left <= 0 {
		return 0, nil
	}
	authzs, ok, err := r.orderAuthorizations(ctx, ch)
	if err != nil || !ok || !untold(authzs, parts, ch) {
		return 0, err
	}
	return left, nil
}

// untold reports whether a sibling of the challenge (an authorization of
// its order but its own) has not told its part yet.
func untold(authzs []string, parts map[string]sharePart, ch *v1alpha1.ACMEChallenge) bool {
	return slices.ContainsFunc(authzs, func(a string) bool {
		_, told := parts[a]
		return !told && a != ch.Spec.AuthorizationURL
	})
}

// standAside tells the challenge's siblings not to wait for it: it is not
// planned (refused, or its gateways are not found).
func (r *ChallengeReconciler) standAside(ch *v1alpha1.ACMEChallenge) {
	if ch.Spec.Order != "" && ch.Spec.AuthorizationURL != "" {
		r.sharing.tell(ch, sharePart{alone: true})
	}
}

// leaveShared takes the challenge's route out of its order's shared
// VirtualService, if it is there: the VirtualService is written again for
// the other members, or deleted with its last member. Whatever routes the
// challenge now has are written before.
func (r *ChallengeReconciler) leaveShared(ctx context.Context, ch *v1alpha1.ACMEChallenge) error {
	if ch.Spec.Order == "" {
		return nil
	}
	v := &istionet.VirtualService{}
	key := client.ObjectKey{Namespace: ch.Namespace, Name: sharedName(ch.Namespace, ch.Spec.Order)}
	if err := r.Client.Get(ctx, key, v); err != nil {
		return client.IgnoreNotFound(err)
	}
	if v.Labels[LabelManagedBy] != ManagedByValue || v.Labels[LabelSharedByOrder] != ChallengeKey(ch.Namespace, ch.Spec.Order) {
		return nil // not ours
	}
	members := sharedMembers(v)
	i := slices.IndexFunc(members, func(m SharedMember) bool { return m.Name == ch.Name })
	if i < 0 {
		return nil
	}
	members = slices.Delete(members, i, i+1)
	if len(members) == 0 {
		if err := r.Client.Delete(ctx, v, client.Preconditions{UID: &v.UID, ResourceVersion: &v.ResourceVersion}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting VirtualService %s, which only challenge %s/%s used: %w", key, ch.Namespace, ch.Name, err)
		}
		return nil
	}
	want := BuildSharedVirtualService(ch.Namespace, ch.Spec.Order, members)
	want.ResourceVersion = v.ResourceVersion
	if err := r.Client.Update(ctx, want); err != nil {
		return fmt.Errorf("taking challenge %s/%s out of VirtualService %s: %w", ch.Namespace, ch.Name, key, err)
	}
	return nil
}

// isShared tells an order's shared VirtualService from a challenge's own.
func isShared(v *istionet.VirtualService) bool {
	return v.Labels[LabelSharedByOrder] != ""
}

// challengesOfRoute maps a route object to the challenges it serves: the
// one its annotation names, or every member of a shared VirtualService.
func challengesOfRoute(_ context.Context, obj client.Object) []reconcile.Request {
	if ns, name, ok := strings.Cut(obj.GetAnnotations()[AnnotationChallenge], "/"); ok {
		return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: ns, Name: name}}}
	}
	if obj.GetLabels()[LabelSharedByOrder] == "" {
		return nil
	}
	var out []reconcile.Request
	for _, ref := range obj.GetOwnerReferences() {
		if ref.Kind == "ACMEChallenge" && ref.APIVersion == v1alpha1.GroupVersion.String() {
			out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: obj.GetNamespace(), Name: ref.Name}})
		}
	}
	return out
}
