package issuer

import (
	"bytes"
	"context"
	"strings"

	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"
)

// issuer-lib v0.11.0 puts its pending prefix on a request's message twice:
// the request controller adds it and the CertificateRequest helper adds it
// again, so `cmctl status certificate` would read "Signing still in progress. Reason: Signing still in progress. Reason: ...".
// Newer issuer-lib releases cannot be fetched here, so the doubled prefix is
// written once on the way to the API server instead.
const (
	pendingPrefix        = "Signing still in progress. Reason: "
	doubledPendingPrefix = pendingPrefix + pendingPrefix
)

func oncePending(s string) string {
	return strings.ReplaceAll(s, doubledPendingPrefix, pendingPrefix)
}

// onceManager hands issuer-lib a client that writes the pending prefix
// once; everything else is the manager's own. (issuer-lib's pending Events,
// which carried it too, are not recorded: see requestEvents.)
type onceManager struct {
	manager.Manager
}

func (m onceManager) GetClient() client.Client {
	return onceClient{Client: m.Manager.GetClient()}
}

type onceClient struct {
	client.Client
}

func (c onceClient) Status() client.SubResourceWriter {
	return onceStatusWriter{SubResourceWriter: c.Client.Status()}
}

type onceStatusWriter struct {
	client.SubResourceWriter
}

func (w onceStatusWriter) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
	data, err := patch.Data(obj)
	if err != nil {
		return err
	}
	if fixed := []byte(oncePending(string(data))); !bytes.Equal(fixed, data) {
		patch = client.RawPatch(patch.Type(), fixed)
	}
	return w.SubResourceWriter.Patch(ctx, obj, patch, opts...)
}
