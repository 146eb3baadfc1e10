//go:build chaos

package e2e

import (
	"testing"
	"time"

	"github.com/istio-acme/istio-acme-issuer/internal/testenv"
)

// TestChaosCampaign is what 'make chaos' runs: 100 Certificates at once
// while the CA fails a share of every kind of request, the two controller
// replicas are SIGKILLed at least 20 times, kube-apiserver restarts once and
// the gateway's configuration lags for a while. CHAOS_SEED repeats a run.
func TestChaosCampaign(t *testing.T) {
	seed := chaosSeed(t)
	runChaos(t, chaosPlan{
		certificates:          100,
		kills:                 24,
		killEvery:             2 * time.Second,
		restartAPIServerAfter: 20 * time.Second,
		lag:                   3 * time.Second, lagFrom: 5 * time.Second, lagFor: 30 * time.Second,
		faults:            campaignFaults,
		pebbleNonceReject: 10,
		renewals:          20,
		timeout:           15 * time.Minute,
		seed:              seed,
	})
}

// campaignFaults fail about one request in five at every endpoint that
// moves an order forward.
var campaignFaults = []testenv.FaultRule{
	{Endpoint: testenv.EndpointNewOrder, Kind: testenv.Fault503, Fraction: 0.1},
	{Endpoint: testenv.EndpointNewOrder, Kind: testenv.FaultRateLimited, Fraction: 0.05, RetryAfter: 5 * time.Second},
	{Endpoint: testenv.EndpointNewOrder, Kind: testenv.FaultReset, Fraction: 0.05, AfterCA: true},
	{Endpoint: testenv.EndpointNewOrder, Kind: testenv.FaultTimeout, Fraction: 0.02, AfterCA: true, Delay: 16 * time.Second},
	{Endpoint: testenv.EndpointChallenge, Kind: testenv.Fault500, Fraction: 0.1},
	{Endpoint: testenv.EndpointChallenge, Kind: testenv.FaultReset, Fraction: 0.05, AfterCA: true},
	{Endpoint: testenv.EndpointChallenge, Kind: testenv.FaultRateLimited, Fraction: 0.03, RetryAfter: 2 * time.Second},
	{Endpoint: testenv.EndpointOrder, Kind: testenv.FaultBadNonce, Fraction: 0.1},
	{Endpoint: testenv.EndpointOrder, Kind: testenv.FaultTimeout, Fraction: 0.02, AfterCA: true, Delay: 16 * time.Second},
	{Endpoint: testenv.EndpointOrder, Kind: testenv.Fault503, Fraction: 0.05},
	{Endpoint: testenv.EndpointAuthorization, Kind: testenv.FaultReset, Fraction: 0.05},
	{Endpoint: testenv.EndpointAuthorization, Kind: testenv.Fault500, Fraction: 0.05},
	{Endpoint: testenv.EndpointFinalize, Kind: testenv.Fault503, Fraction: 0.1},
	{Endpoint: testenv.EndpointFinalize, Kind: testenv.FaultReset, Fraction: 0.05, AfterCA: true},
	{Endpoint: testenv.EndpointCertificate, Kind: testenv.Fault500, Fraction: 0.1},
}
