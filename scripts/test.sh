#!/usr/bin/env bash
# The full test command. It installs what the tests need outside Go (a real
# redis-server, the Apache Kafka broker's jars, Java if missing, Debian's
# postgresql, the psec
# cross-check library), starts Redis, Kafka and PostgreSQL on free loopback ports
# (scripts/services.sh), runs the checks and every Go test against them, and
# stops the servers again. Integration tests skip without the servers when
# run by hand, and fail without them when CI=true: this script sets CI=true.
set -euo pipefail
cd "$(dirname "$0")/.."
export CI=true

./scripts/services.sh start # first: it installs the JDK and Maven test-deps.sh builds with
trap './scripts/services.sh stop' EXIT
./scripts/test-deps.sh
set -a; . ./.services.env; set +a

echo "== gofmt, go vet"
unformatted=$(gofmt -l . | grep -v '^\.services/' || true)
if [ -n "$unformatted" ]; then
  echo "gofmt would change:"; echo "$unformatted"; exit 1
fi
go vet ./...

echo "== go test"
# Verbose output goes to a log; the package lines (and, on failure, the
# failing tests' output) come here, and the counts close the run.
gotest_log=$(mktemp)
set +e
go test -count=1 -timeout 25m -v ./... >"$gotest_log" 2>&1
gotest_rc=$?
set -e
grep -E '^(ok|FAIL|\?)\s' "$gotest_log" || true
if [ "$gotest_rc" -ne 0 ]; then
  echo "== go test failed; its output without the passing tests' lines:"
  grep -vE '^\s*(=== (RUN|PAUSE|CONT|NAME)|--- PASS)' "$gotest_log" | tail -400
fi
passed=$(grep -cE '^\s*--- PASS' "$gotest_log" || true)
failed=$(grep -cE '^\s*--- FAIL' "$gotest_log" || true)
skipped=$(grep -cE '^\s*--- SKIP' "$gotest_log" || true)
rm -f "$gotest_log"
if [ "$gotest_rc" -ne 0 ]; then
  echo "go test: $passed passed, $failed failed, $skipped skipped"
  exit "$gotest_rc"
fi

if [ -x scripts/schemathesis.sh ]; then
  echo "== schemathesis against the live branch API"
  ./scripts/schemathesis.sh
fi
if [ -x scripts/schemathesis-records.sh ]; then
  echo "== schemathesis against the live records inquiry API"
  ./scripts/schemathesis-records.sh
fi
./scripts/services.sh stop
trap - EXIT
echo "go test: $passed passed, $failed failed, $skipped skipped"
