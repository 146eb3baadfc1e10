# istio-acme-issuer
#
#   make demo      issue a certificate end to end on an embedded local setup
#   make test      unit, integration (envtest) and end-to-end tests
#   make generate  regenerate deepcopy, CRDs, RBAC and the chart's CRDs
#   make verify    fail if generated files are out of date, or gofmt/vet/staticcheck complain
#   make tools     build the pinned test and generation tools into the cache
#   make docker-build  build the controller image (IMAGE=..., VERSION=...)
#   make differential  the route planner against Istio on 20,000 generated layouts
#   make chaos     100 Certificates through a faulty CA, killed replicas and a restarted API server
#   make test-compat  the chart and one issuance on the ends of the supported Kubernetes and cert-manager range

SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c

TOOLS := hack/tools/build.sh
CONTROLLER_GEN = $(shell $(TOOLS) --path controller-gen)
CHART := charts/istio-acme-issuer
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
# The image's flags (Dockerfile): a static, trimmed binary stamped with the version.
LDFLAGS := -s -w -X main.version=$(VERSION)

.PHONY: all
all: build

.PHONY: build
build:
	CGO_ENABLED=0 go build -trimpath -ldflags "$(LDFLAGS)" -o bin/istio-acme-issuer ./cmd/istio-acme-issuer

.PHONY: tools
tools:
	$(TOOLS)

.PHONY: generate
generate:
	$(TOOLS) controller-gen
	$(CONTROLLER_GEN) object paths=./api/...
	$(CONTROLLER_GEN) crd paths=./api/... output:crd:artifacts:config=deploy/crds
	$(CONTROLLER_GEN) rbac:roleName=istio-acme-issuer paths=./issuer/... paths=./solver/... paths=./shim/... paths=./cmd/... output:rbac:artifacts:config=deploy/rbac
	hack/chart-generated.sh deploy/crds deploy/rbac/role.yaml $(CHART)
	$(MAKE) --no-print-directory install-yaml
	go run ./hack/valuestable $(CHART)/values.yaml $(CHART)/README.md

# deploy/install.yaml: the chart rendered with its defaults, for kubectl apply.
.PHONY: install-yaml
install-yaml:
	$(TOOLS) helm
	hack/render-install.sh $(CHART) deploy/install.yaml

IMAGE ?= ghcr.io/istio-acme/istio-acme-issuer:$(VERSION)

# Builds the controller image (needs a Docker engine; none runs in CI here).
.PHONY: docker-build
docker-build:
	docker build --build-arg VERSION=$(VERSION) -t $(IMAGE) .

.PHONY: verify
verify: generate
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	go vet ./...
	$(TOOLS) staticcheck
	$$($(TOOLS) --path staticcheck) ./...
	hack/check-image-build.sh
	# The CI and release workflows, as GitHub would read them.
	$(TOOLS) actionlint
	$$($(TOOLS) --path actionlint) -no-color .github/workflows/*.yaml
	cd e2e && go vet ./...
	# The bench, demo and chaos campaign build only with their tags: vet
	# and check them too, or a change could break them unseen.
	cd e2e && go vet -tags bench,demo,chaos ./...
	cd e2e && $$(../$(TOOLS) --path staticcheck) -tags bench,demo,chaos ./...
	@git diff --exit-code -- api deploy $(CHART) || { echo "generated files are out of date: run 'make generate' and commit"; exit 1; }
	@test -z "$$(git status --porcelain -- api deploy $(CHART))" || { echo "untracked generated files: run 'make generate' and commit"; git status --porcelain -- api deploy $(CHART); exit 1; }

.PHONY: test
test: tools
	hack/test.sh

# The whole product on an embedded default: local kube-apiserver and etcd,
# Pebble, cert-manager's controllers, our controller and an ingress gateway
# routed by Istio's own simulation; issues a certificate, prints
# 'cmctl status certificate' and stops everything it started.
.PHONY: demo
demo: tools
	hack/run-e2e-test.sh demo TestDemo

# The route planner against Istio's own translation on many generated
# layouts: LAYOUTS (default 20000), SEED (default 0: a random one, printed),
# FROM (the first layout's index). Prints a summary, and each failing layout
# as YAML; rerun one with SEED=S FROM=I LAYOUTS=1.
LAYOUTS ?= 20000
SEED ?= 0
FROM ?= 0
.PHONY: differential
differential:
	cd e2e && go test -count=1 -timeout 0 -v ./differential -run TestDifferential -args -layouts=$(LAYOUTS) -seed=$(SEED) -from=$(FROM) | grep -Ev '^=== RUN'

# 100 Certificates at once while the CA fails a share of requests, the two
# controller replicas are killed 24 times, kube-apiserver restarts and the
# gateway lags; prints the figures and checks the invariants. CHAOS_SEED=N
# repeats a run (the seed is printed).
.PHONY: chaos
chaos: tools
	CHAOS_SEED=$(CHAOS_SEED) hack/run-e2e-test.sh chaos TestChaosCampaign

CHAOS_SEED ?= 0

# The compatibility range: the chart, its RBAC and one issuance on the
# lowest and highest Kubernetes (KUBE_GROUPS) with the lowest and highest
# cert-manager (CERT_MANAGER_VERSIONS), and the route planner against Istio
# on LAYOUTS (default 3000) layouts. Prints each combination's result.
.PHONY: test-compat
test-compat: tools
	LAYOUTS=$(COMPAT_LAYOUTS) hack/test-compat.sh

COMPAT_LAYOUTS ?= 3000

# Time from Certificate creation to Ready (one at a time and 20 at once),
# API requests per Certificate and the controller's peak memory.
.PHONY: bench
bench: tools
	TEST_TIMEOUT=45m hack/run-e2e-test.sh bench TestBench
