// Package kubeutil holds small helpers for writing Kubernetes objects.
package kubeutil

import (
	"context"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// UpdateStatus applies mutate to obj and writes obj's status. It writes
// nothing when mutate changes nothing, and on a conflict it reads the object
// again and re-applies mutate, so a concurrent writer's fields survive.
func UpdateStatus[T client.Object](ctx context.Context, c client.Client, obj T, mutate func(T)) error {
	return update(ctx, c, obj, mutate, func(o T) error { return c.Status().Update(ctx, o) })
}

// Update is UpdateStatus for an object without a status subresource: the
// whole object is written.
func Update[T client.Object](ctx context.Context, c client.Client, obj T, mutate func(T)) error {
	return update(ctx, c, obj, mutate, func(o T) error { return c.Update(ctx, o) })
}

func update[T client.Object](ctx context.Context, c client.Client, obj T, mutate func(T), write func(T) error) error {
	first := true
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if !first {
			if err := c.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
				return err
			}
		}
		first = false
		before := obj.DeepCopyObject()
		mutate(obj)
		if equality.Semantic.DeepEqual(before, obj) {
			return nil
		}
		return write(obj)
	})
}
