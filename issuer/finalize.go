package issuer

import (
	"context"
	"errors"
	"net/http"

	"github.com/cert-manager/cert-manager/third_party/forked/acme"
)

// The ACME client's finalize call reads the order again at once when the
// CA answers "processing", and every second after that until it is valid.
// Sign never waits for the CA, and that immediate read races the CA's own
// issuance (Pebble deadlocks the order for good about once in a thousand
// orders when the two meet). So a finalize is sent on its own: the read is
// stopped before it leaves, and the order is read on the next pass, after
// the poll interval.

// finalizeOnlyKey marks a finalize call's context with the order's URL.
type finalizeOnlyKey struct{}

// errFinalizeSent stops the client's read of the order after a finalize.
var errFinalizeSent = errors.New("the finalize request was sent; the order is read on the next pass")

// finalize sends the order's finalize request with the CSR. It returns the
// certificate chain when the CA issued at once, and issuing when the CA
// accepted the CSR and is still issuing.
func finalize(ctx context.Context, c *acme.Client, o *acme.Order, csr []byte) (der [][]byte, issuing bool, err error) {
	der, _, err = c.CreateOrderCert(context.WithValue(ctx, finalizeOnlyKey{}, o.URI), o.FinalizeURL, csr, true)
	if errors.Is(err, errFinalizeSent) {
		return nil, true, nil
	}
	return der, false, err
}

// stoppedAfterFinalize reports whether req is the client's read of the
// order that a finalize call of this context must not send. The client
// reads the order at the finalize answer's Location, which a CA may leave
// out: an empty URL is that read too.
func stoppedAfterFinalize(req *http.Request) bool {
	orderURL, ok := req.Context().Value(finalizeOnlyKey{}).(string)
	url := req.URL.String()
	return ok && req.Method == http.MethodPost && (url == orderURL || url == "")
}
