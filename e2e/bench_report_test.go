//go:build bench

package e2e

import (
	"fmt"
	"io"
	"maps"
	"math"
	"runtime"
	"slices"
	"strings"
	"time"
)

// benchReport prints the bench's figures, each side's in a column, then
// three ratios: cert-manager's ACME issuer at its best over ours (how much
// faster ours is), and ours and cert-manager's over the floor (how far each
// is from what any issuer costs on this stack; 1.0 is the limit).
type benchReport struct {
	cfg          benchConfig
	sides        []*benchSide
	clutter      clutterFigures
	topUp        *benchFigures
	memory       *benchFigures
	memoryIssued int
	peakRSS      string
	// clutterPeakRSS is the peak until the clutter was created; peakRSS
	// the peak from then on; settledRSS what is resident at the end.
	clutterPeakRSS, settledRSS string
}

// cpuRows are the processes whose CPU time the report shows, by the name
// of their binary, with what they stand for.
var cpuRows = []struct{ binary, title string }{
	{"istio-acme-issuer", "our controller"},
	{"cert-manager-controller", "cert-manager"},
	{"kube-apiserver", "kube-apiserver"},
	{"etcd", "etcd"},
	{"pebble", "Pebble (CA)"},
	{"pebble-challtestsrv", "Pebble's DNS"},
	{"kube-controller-manager", "garbage collector"},
	{testProcess, "test: Istio translation, stand-in"},
}

const (
	benchColumn = 30
	ratioColumn = 12
)

// ratioTitles head the ratio columns, in the order ratios gives them.
var ratioTitles = []string{"cm/ours", "ours/floor", "cm/floor"}

func (r *benchReport) printHeader(w io.Writer) {
	fmt.Fprintf(w, "\n%d cores; %s keys; cert-manager with %d workers per controller and %d requests/s\n",
		cores(), r.cfg.keyAlgorithm, r.cfg.certManagerWorkers, r.cfg.certManagerQPS)
	fmt.Fprintf(w, "ratios: cm = %s, ours = %s, floor = %s (no ACME, no routing)\n", r.side("cm").title, r.side("ours").title, r.side("floor").title)
}

// side is the side of key.
func (r *benchReport) side(key string) *benchSide {
	for _, s := range r.sides {
		if s.key == key {
			return s
		}
	}
	panic("no bench side " + key)
}

// ratios are the ratio columns of a figure v has for each side (0: none).
func (r *benchReport) ratios(v func(s *benchSide) time.Duration) []string {
	ours, cm, floor := v(r.side("ours")), v(r.side("cm")), v(r.side("floor"))
	return []string{ratio(cm, ours), ratio(ours, floor), ratio(cm, floor)}
}

func (r *benchReport) printOne(w io.Writer) {
	r.header(w, "One Certificate with two names, one at a time")
	r.timeRow(w, "first after start (cold)", func(s *benchSide) []time.Duration { return []time.Duration{s.cold} })
	r.textRow(w, fmt.Sprintf("min / median / max of %d", r.cfg.oneRuns), func(s *benchSide) string { return secondsSummary(s.one, false) })
	r.timeRow(w, "median", func(s *benchSide) []time.Duration { return s.one })
}

func (r *benchReport) printSize(w io.Writer, n int) {
	r.header(w, fmt.Sprintf("%d Certificates created at once, two names each", n))
	r.workload(w, func(s *benchSide) *benchFigures {
		for _, f := range s.at {
			if f.n == n {
				return f
			}
		}
		return nil
	})
}

func (r *benchReport) printMemory(w io.Writer) {
	c := r.clutter
	ours := func(f *benchFigures) func(s *benchSide) *benchFigures {
		return func(s *benchSide) *benchFigures {
			if s == r.sides[0] {
				return f
			}
			return nil
		}
	}
	if r.topUp != nil {
		r.header(w, fmt.Sprintf("Memory case: %d more at once, to %d of ours", r.topUp.n, r.cfg.memoryCerts))
		r.workload(w, ours(r.topUp))
	}
	if r.memory != nil {
		r.header(w, fmt.Sprintf("Memory case: %d Secrets, %d Gateways, %d VirtualServices created (%.0f s), then %d at once among them",
			c.secrets, c.gateways, c.virtualServices, c.took.Seconds(), r.memory.n))
		r.workload(w, ours(r.memory))
	}
	fmt.Fprintf(w, "\nour controller's resident memory in the memory case (%d Certificates issued, %d Secrets, %d Gateways, %d VirtualServices):\n", r.memoryIssued, c.secrets, c.gateways, c.virtualServices)
	fmt.Fprintf(w, "  peak while the Certificates were issued and the clutter created  %s\n", r.clutterPeakRSS)
	fmt.Fprintf(w, "  peak while %d more were issued among the clutter                 %s\n", r.cfg.clutterBatch, r.peakRSS)
	fmt.Fprintf(w, "  resident once quiet                                                %s\n", r.settledRSS)
}

func (r *benchReport) header(w io.Writer, title string) {
	fmt.Fprintf(w, "\n%s\n%-46s", title, "")
	for _, s := range r.sides {
		fmt.Fprintf(w, "%-*s", benchColumn, s.title)
	}
	for _, t := range ratioTitles {
		fmt.Fprintf(w, "%-*s", ratioColumn, t)
	}
	fmt.Fprintln(w)
}

// row prints one line: a cell per side, then the ratios (none: blank).
func (r *benchReport) row(w io.Writer, what string, cell func(s *benchSide) string, ratios []string) {
	fmt.Fprintf(w, "%-46s", what)
	for _, s := range r.sides {
		fmt.Fprintf(w, "%-*s", benchColumn, cell(s))
	}
	for _, q := range ratios {
		fmt.Fprintf(w, "%-*s", ratioColumn, q)
	}
	fmt.Fprintln(w)
}

func (r *benchReport) textRow(w io.Writer, what string, cell func(s *benchSide) string) {
	r.row(w, what, cell, nil)
}

// timeRow prints the median of each side's durations and their ratios.
func (r *benchReport) timeRow(w io.Writer, what string, ds func(s *benchSide) []time.Duration) {
	cell := func(s *benchSide) string {
		if len(ds(s)) == 0 {
			return "-"
		}
		return fmt.Sprintf("%.2f s", median(ds(s)).Seconds())
	}
	r.row(w, what, cell, r.ratios(func(s *benchSide) time.Duration { return median(ds(s)) }))
}

func (r *benchReport) workload(w io.Writer, at func(s *benchSide) *benchFigures) {
	figure := func(f func(*benchFigures) string) func(*benchSide) string {
		return func(s *benchSide) string {
			if fig := at(s); fig != nil {
				return f(fig)
			}
			return "-"
		}
	}
	dur := func(f func(*benchFigures) time.Duration) (func(*benchSide) string, []string) {
		return figure(func(fig *benchFigures) string { return fmt.Sprintf("%.2f s", f(fig).Seconds()) }),
			r.ratios(func(s *benchSide) time.Duration {
				if fig := at(s); fig != nil {
					return f(fig)
				}
				return 0
			})
	}
	cell, q := dur(func(f *benchFigures) time.Duration { return f.all })
	r.row(w, "all Ready", cell, q)
	cell, q = dur(func(f *benchFigures) time.Duration { return median(f.each) })
	r.row(w, "each, median", cell, q)
	r.textRow(w, "each, min / median / p95 / max", figure(func(f *benchFigures) string { return secondsSummary(f.each, true) }))
	for _, p := range cpuRows {
		cell, _ := dur(func(f *benchFigures) time.Duration { return f.cpu[p.binary] })
		r.textRow(w, "CPU, "+p.title, cell)
	}
	cell, q = dur(func(f *benchFigures) time.Duration { return sumCPU(f.cpu) })
	r.row(w, "CPU, all processes", cell, q)
	r.textRow(w, "CPU busy (all processes / cores x all Ready)", figure(func(f *benchFigures) string {
		return fmt.Sprintf("%.0f%%", 100*sumCPU(f.cpu).Seconds()/(float64(cores())*f.all.Seconds()))
	}))
	for _, who := range []string{clientOurs, clientCertManager, clientOthers} {
		r.textRow(w, fmt.Sprintf("API requests per Certificate, %s", who), figure(func(f *benchFigures) string {
			return fmt.Sprintf("%.1f", float64(total(f.requests[who]))/float64(f.n))
		}))
	}
	r.textRow(w, "Istio writes per Certificate, ours (with GC)", figure(func(f *benchFigures) string {
		return fmt.Sprintf("%.2f", float64(f.solverWrites[clientOurs])/float64(f.n))
	}))
	r.textRow(w, "Pod/Service/Ingress writes per host, cert-mgr", figure(func(f *benchFigures) string {
		return fmt.Sprintf("%.2f", float64(f.solverWrites[clientCertManager])/float64(f.hosts))
	}))
	r.textRow(w, "stand-in answers per host", figure(func(f *benchFigures) string {
		return fmt.Sprintf("%.1f", float64(f.standInRequests)/float64(f.hosts))
	}))
	r.textRow(w, "our controller's peak resident memory", figure(func(f *benchFigures) string { return f.peakRSS }))
	fmt.Fprintln(w, "API requests per Certificate by verb:")
	for _, s := range r.sides {
		if f := at(s); f != nil {
			for _, who := range []string{clientOurs, clientCertManager} {
				if len(f.requests[who]) > 0 {
					fmt.Fprintf(w, "  %-34s %-13s %s\n", s.title, who, byVerb(f.requests[who], f.n))
					fmt.Fprintf(w, "  %-34s %-13s %s\n", "", "", byVerb(f.requestsByResource[who], f.n))
				}
			}
		}
	}
}

// ratio is a / b, "-" when either is missing.
func ratio(a, b time.Duration) string {
	if a <= 0 || b <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fx", a.Seconds()/b.Seconds())
}

func sumCPU(p processCPU) time.Duration {
	var t time.Duration
	for _, v := range p {
		t += v
	}
	return t
}

func total(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func byVerb(m map[string]int, n int) string {
	var parts []string
	for _, verb := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %.1f", verb, float64(m[verb])/float64(n)))
	}
	return strings.Join(parts, ", ")
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	return slices.Sorted(slices.Values(ds))[len(ds)/2]
}

// secondsSummary is "min / median / max" (with p95 before max when asked) in
// seconds.
func secondsSummary(ds []time.Duration, p95 bool) string {
	if len(ds) == 0 {
		return "-"
	}
	s := slices.Sorted(slices.Values(ds))
	parts := []float64{s[0].Seconds(), s[len(s)/2].Seconds()}
	if p95 {
		parts = append(parts, s[int(math.Ceil(0.95*float64(len(s))))-1].Seconds())
	}
	parts = append(parts, s[len(s)-1].Seconds())
	var out []string
	for _, p := range parts {
		out = append(out, fmt.Sprintf("%.1f", p))
	}
	return strings.Join(out, " / ") + " s"
}

func cores() int { return runtime.NumCPU() }
