package issuer

import (
	"context"
	"net/http"
	"testing"
)

// A finalize call stops the client's read of its order, whether the CA's
// answer gave the order's URL (Location) or not, and nothing else: not the
// finalize itself, nor the certificate's download, nor any call outside a
// finalize.
func TestStoppedAfterFinalize(t *testing.T) {
	const orderURL = "https://ca.example/order/1"
	finalizing := context.WithValue(context.Background(), finalizeOnlyKey{}, orderURL)
	tests := []struct {
		name   string
		ctx    context.Context
		method string
		url    string
		want   bool
	}{
		{name: "the order's read", ctx: finalizing, method: http.MethodPost, url: orderURL, want: true},
		{name: "the read at a missing Location", ctx: finalizing, method: http.MethodPost, url: "", want: true},
		{name: "the finalize request", ctx: finalizing, method: http.MethodPost, url: "https://ca.example/order/1/finalize"},
		{name: "the certificate's download", ctx: finalizing, method: http.MethodPost, url: "https://ca.example/cert/1"},
		{name: "a nonce", ctx: finalizing, method: http.MethodHead, url: "https://ca.example/nonce"},
		{name: "the order read outside a finalize", ctx: context.Background(), method: http.MethodPost, url: orderURL},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(tt.ctx, tt.method, tt.url, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := stoppedAfterFinalize(req); got != tt.want {
				t.Errorf("stopped %v, want %v", got, tt.want)
			}
		})
	}
}
