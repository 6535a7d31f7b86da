# The one build line: CI, deploy/Dockerfile and the built-binary tests use it
# (cmd/internal/deploycheck checks that the Dockerfile carries it verbatim).
# The second line builds the development and test tools, never deployed
# (docs/operations.md, "Two binaries").
.PHONY: build test image bench

build:
	CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o bin/pingate ./cmd/pingate
	CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o bin/pingate-dev ./cmd/pingate-dev

test:
	./scripts/test.sh

image:
	docker build -f deploy/Dockerfile -t pingate:dev .

# The whole system under load beside two bare moov-io/iso8583 baselines (single
# hop and relay) with every process's CPU per operation, then the
# micro-benchmarks; writes BENCHMARKS.md (~15 min; BENCH_SOAK=10m for the full
# memory soak; BENCH_QUICK=1 runs everything once, briefly, to check the
# script). Not part of test/CI.
bench:
	./scripts/bench.sh
