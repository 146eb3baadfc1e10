package testenv

import (
	"context"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// EventsAbout lists the Events in namespace ("" for all) whose regarding
// object matches.
func EventsAbout(ctx context.Context, cl client.Reader, namespace string, regarding func(corev1.ObjectReference) bool) ([]eventsv1.Event, error) {
	var list eventsv1.EventList
	if err := cl.List(ctx, &list, client.InNamespace(namespace)); err != nil {
		return nil, err
	}
	var out []eventsv1.Event
	for _, e := range list.Items {
		if regarding(e.Regarding) {
			out = append(out, e)
		}
	}
	return out, nil
}

// FindEvent reports whether an Event about a matching object has reason and
// a note that contains every text. It returns "reason: note" of the one found,
// or of every Event about the object, for a message that says what was
// there instead.
func FindEvent(ctx context.Context, cl client.Reader, namespace string, regarding func(corev1.ObjectReference) bool, reason string, texts ...string) (bool, string) {
	events, err := EventsAbout(ctx, cl, namespace, regarding)
	if err != nil {
		return false, err.Error()
	}
	var seen []string
	for _, e := range events {
		line := e.Reason + ": " + e.Note
		if e.Reason == reason && !slices.ContainsFunc(texts, func(t string) bool { return !strings.Contains(e.Note, t) }) {
			return true, line
		}
		seen = append(seen, line)
	}
	return false, strings.Join(seen, "\n")
}
