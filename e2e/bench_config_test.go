//go:build bench

package e2e

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
)

// benchConfig is what the bench runs, from environment variables so that
// 'make bench BENCH_SIZES=20' and the like work:
//
//	BENCH_ONE=3              one-Certificate runs per issuer (after a cold one)
//	BENCH_KEY=ecdsa          the Certificates' private keys: ecdsa (P-256) or rsa (2048, cert-manager's default)
//	BENCH_SIZES=20,100,500   Certificates created at once, one workload each (0: none)
//	BENCH_CM_MAX=100         largest size run through cert-manager's issuer too (0: none; 500: about 5 minutes more)
//	BENCH_SOLVER_MAX=0       largest size run through our solver mode too (0: none; its one-Certificate runs always)
//	BENCH_MEMORY_CERTS=1000  ours issued in all before the memory case's clutter (0: no memory case)
//	BENCH_CLUTTER=10000,2000,5000  unrelated Secrets, Gateways, VirtualServices of the memory case
//	BENCH_CLUTTER_BATCH=20   Certificates issued at once among the clutter
//	BENCH_CM_WORKERS=60      cert-manager's workers per controller
//	BENCH_CM_QPS=500         cert-manager's client-side API request limit
//	BENCH_PROFILE=dir        write CPU profiles of our controller per workload and heap profiles there
//	BENCH_PROFILE_SECONDS=30 length of each CPU profile
type benchConfig struct {
	oneRuns int
	// keyAlgorithm is the Certificates' private key algorithm. ECDSA by
	// default: cert-manager generates every Certificate's key, the same on
	// each side, and an RSA 2048 key costs about 0.1 CPU-seconds on this
	// machine, more than our controller spends on the whole Certificate.
	keyAlgorithm       cmapi.PrivateKeyAlgorithm
	sizes              []int
	solverModeMaxSize  int
	certManagerMaxSize int
	clutterBatch       int
	memoryCerts        int
	clutter            clutterSize
	// cert-manager runs with more workers and a higher request limit than
	// its defaults (5 and 20/s): its HTTP-01 self-check holds a worker for
	// 8 s per challenge, so with 5 workers 500 Certificates of two names
	// would take at least 1,600 s on its side alone.
	certManagerWorkers, certManagerQPS int
	profileDir                         string
	profileSeconds                     int
}

// clutterSize is how many unrelated objects the memory case creates.
type clutterSize struct{ secrets, gateways, virtualServices int }

func benchConfigFromEnv(t *testing.T) benchConfig {
	t.Helper()
	cfg := benchConfig{
		oneRuns:            envInt(t, "BENCH_ONE", 3),
		certManagerMaxSize: envInt(t, "BENCH_CM_MAX", 100),
		clutterBatch:       envInt(t, "BENCH_CLUTTER_BATCH", 20),
		sizes:              envInts(t, "BENCH_SIZES", []int{20, 100, 500}),
		solverModeMaxSize:  envInt(t, "BENCH_SOLVER_MAX", 0),
		memoryCerts:        envInt(t, "BENCH_MEMORY_CERTS", 1000),
		certManagerWorkers: envInt(t, "BENCH_CM_WORKERS", 60),
		certManagerQPS:     envInt(t, "BENCH_CM_QPS", 500),
		profileDir:         os.Getenv("BENCH_PROFILE"),
		profileSeconds:     envInt(t, "BENCH_PROFILE_SECONDS", 30),
	}
	switch key := os.Getenv("BENCH_KEY"); key {
	case "", "ecdsa":
		cfg.keyAlgorithm = cmapi.ECDSAKeyAlgorithm
	case "rsa":
		cfg.keyAlgorithm = cmapi.RSAKeyAlgorithm
	default:
		t.Fatalf("BENCH_KEY=%q: want ecdsa or rsa", key)
	}
	cl := envInts(t, "BENCH_CLUTTER", []int{10000, 2000, 5000})
	if len(cl) != 3 {
		t.Fatalf("BENCH_CLUTTER=%q: want three numbers: Secrets, Gateways, VirtualServices", os.Getenv("BENCH_CLUTTER"))
	}
	cfg.clutter = clutterSize{cl[0], cl[1], cl[2]}
	return cfg
}

// workloadTimeout is how long a workload of n Certificates may take before
// the bench reports it as failed.
func workloadTimeout(n int) time.Duration {
	return 3*time.Minute + time.Duration(n)*time.Second
}

func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		t.Fatalf("%s=%q: want a whole number, 0 or more", name, v)
	}
	return n
}

func envInts(t *testing.T, name string, def []int) []int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	var out []int
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 0 {
			t.Fatalf("%s=%q: want whole numbers separated by commas", name, v)
		}
		out = append(out, n)
	}
	return out
}
