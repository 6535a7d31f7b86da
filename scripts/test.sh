#!/usr/bin/env bash
# The full test command: installs and starts a real Redis and a real Kafka
# broker on free loopback ports (scripts/services.sh), runs every Go test
# against them, and stops them again.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -x scripts/services.sh ]; then
  ./scripts/services.sh start
  trap './scripts/services.sh stop' EXIT
  set -a; . ./.services.env; set +a
fi

go vet ./...
test -z "$(gofmt -l . | tee /dev/stderr)"
go test -count=1 -timeout 20m ./...
