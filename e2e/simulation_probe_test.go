package e2e

import (
	"testing"

	"istio.io/istio/pilot/pkg/simulation"
	"istio.io/istio/pilot/test/xds"
)

func TestProbe(t *testing.T) {
	_ = simulation.Call{}
	_ = xds.FakeOptions{}
}
