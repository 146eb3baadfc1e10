package issuer

import (
	"bytes"
	"context"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
)

// requestManager hands issuer-lib a client whose status writes go through
// requestStatusWriter; everything else is the manager's own.
type requestManager struct {
	manager.Manager
}

func (m requestManager) GetClient() client.Client {
	return requestClient{Client: m.Manager.GetClient()}
}

type requestClient struct {
	client.Client
}

func (c requestClient) Status() client.SubResourceWriter {
	return requestStatusWriter{SubResourceWriter: c.Client.Status(), cache: c.Client}
}

// requestStatusWriter sends issuer-lib's status patches with the pending
// prefix once, and leaves out those that would change nothing.
type requestStatusWriter struct {
	client.SubResourceWriter
	cache client.Reader
}

func (w requestStatusWriter) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
	data, err := patch.Data(obj)
	if err != nil {
		return err
	}
	if fixed := []byte(oncePending(string(data))); !bytes.Equal(fixed, data) {
		data = fixed
		patch = client.RawPatch(patch.Type(), fixed)
	}
	if patch.Type() == types.ApplyPatchType && unchangedRequestStatus(ctx, w.cache, obj, data) {
		log.FromContext(ctx).V(1).Info("request status unchanged; not written")
		return nil
	}
	return w.SubResourceWriter.Patch(ctx, obj, patch, opts...)
}
