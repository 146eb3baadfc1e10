package solver

import (
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// notOurs selects objects that this controller did not create.
func notOurs() (client.MatchingLabelsSelector, error) {
	req, err := labels.NewRequirement(LabelManagedBy, selection.NotEquals, []string{ManagedByValue})
	if err != nil {
		return client.MatchingLabelsSelector{}, err
	}
	return client.MatchingLabelsSelector{Selector: labels.NewSelector().Add(*req)}, nil
}

// selectsAny reports whether a Gateway selector matches one of the pods; an
// empty selector matches every gateway workload.
func selectsAny(selector map[string]string, podLabels []map[string]string) bool {
	if len(selector) == 0 {
		return true
	}
	for _, l := range podLabels {
		if hasLabels(l, selector) {
			return true
		}
	}
	return false
}

// hasLabels reports whether labels carry every key of selector with its
// value, as a label selector built from the set matches: without building
// one for each of the cluster's Gateways on every plan.
func hasLabels(labels, selector map[string]string) bool {
	for k, v := range selector {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}
