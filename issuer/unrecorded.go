package issuer

import (
	"sync"

	"github.com/cert-manager/cert-manager/third_party/forked/acme"
	"k8s.io/apimachinery/pkg/types"
)

// unrecordedOrders keeps the orders the CA created whose URL could not be
// written into their ACMEOrder (the API server was unreachable), so that
// the next attempt records them instead of placing a second order. Only a
// crash of the controller in that moment loses one.
type unrecordedOrders struct {
	mu sync.Mutex
	m  map[types.UID]unrecordedOrder
}

type unrecordedOrder struct {
	account string
	order   *acme.Order
}

// keep remembers the order placed for the ACMEOrder with uid.
func (u *unrecordedOrders) keep(uid types.UID, account string, o *acme.Order) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.m == nil {
		u.m = map[types.UID]unrecordedOrder{}
	}
	u.m[uid] = unrecordedOrder{account: account, order: o}
}

// take returns and forgets the order kept for uid, if it belongs to the
// account the issuer uses now.
func (u *unrecordedOrders) take(uid types.UID, account string) (*acme.Order, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	kept, ok := u.m[uid]
	if !ok {
		return nil, false
	}
	delete(u.m, uid)
	return kept.order, kept.account == account
}
