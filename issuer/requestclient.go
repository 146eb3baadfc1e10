package issuer

import (
	"bytes"
	"context"
	"encoding/json"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
)

// requestManager hands issuer-lib a client whose status writes go through
// requestStatusWriter; everything else is the manager's own.
type requestManager struct {
	manager.Manager
	progress *progressMemo
	clock    clock.PassiveClock
}

func (m requestManager) GetClient() client.Client {
	return requestClient{Client: m.Manager.GetClient(), progress: m.progress, clock: m.clock}
}

type requestClient struct {
	client.Client
	progress *progressMemo
	clock    clock.PassiveClock
}

func (c requestClient) Status() client.SubResourceWriter {
	return requestStatusWriter{SubResourceWriter: c.Client.Status(), cache: c.Client, progress: c.progress, clock: c.clock}
}

// requestStatusWriter sends issuer-lib's status patches with the pending
// prefix once, and leaves out those that would change nothing and, with
// progress, progress that has not lasted quietProgress yet.
type requestStatusWriter struct {
	client.SubResourceWriter
	cache    client.Reader
	progress *progressMemo
	clock    clock.PassiveClock
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
	if applied := requestApply(obj, patch.Type(), data); applied != nil {
		if unchangedRequestStatus(ctx, w.cache, obj, applied) {
			log.FromContext(ctx).V(1).Info("request status unchanged; not written")
			return nil
		}
		if w.progress != nil {
			key := client.ObjectKeyFromObject(obj)
			if msg, ok := pendingProgress(applied); !ok {
				w.progress.forget(key)
			} else if !w.progress.lasted(key, msg, w.clock.Now()) {
				// The next pass, a poll interval away, writes it if it lasts.
				log.FromContext(ctx).V(1).Info("request progress not written yet", "message", msg)
				return nil
			}
		}
	}
	return w.SubResourceWriter.Patch(ctx, obj, patch, opts...)
}

// requestApply decodes data when it is an apply of a CertificateRequest's
// status, once for every check above; nil for anything else (an issuer's
// status, or a patch of another kind, is sent as it is).
func requestApply(obj client.Object, pt types.PatchType, data []byte) *cmapi.CertificateRequest {
	if _, ok := obj.(*cmapi.CertificateRequest); !ok || pt != types.ApplyPatchType {
		return nil
	}
	applied := &cmapi.CertificateRequest{}
	if err := json.Unmarshal(data, applied); err != nil {
		return nil
	}
	return applied
}
