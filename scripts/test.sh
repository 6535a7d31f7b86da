#!/usr/bin/env bash
# The full test command. It installs what the tests need outside Go (a real
# redis-server, the Apache Kafka broker's jars, Java if missing, the psec
# cross-check library), starts Redis and Kafka on free loopback ports
# (scripts/services.sh), runs the checks and every Go test against them, and
# stops the servers again. Integration tests skip without the servers when
# run by hand, and fail without them when CI=true: this script sets CI=true.
set -euo pipefail
cd "$(dirname "$0")/.."
export CI=true

./scripts/test-deps.sh
./scripts/services.sh start
trap './scripts/services.sh stop' EXIT
set -a; . ./.services.env; set +a

echo "== gofmt, go vet"
unformatted=$(gofmt -l . | grep -v '^\.services/' || true)
if [ -n "$unformatted" ]; then
  echo "gofmt would change:"; echo "$unformatted"; exit 1
fi
go vet ./...

echo "== go test"
go test -count=1 -timeout 25m ./...

if [ -x scripts/schemathesis.sh ]; then
  echo "== schemathesis against the live branch API"
  ./scripts/schemathesis.sh
fi
