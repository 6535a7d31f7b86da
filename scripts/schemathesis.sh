#!/usr/bin/env bash
# Contract test of the branch API (docs/openapi.yaml) against a live gateway:
# installs schemathesis (PyPI, pinned) into a venv under .services/, starts
# `pingate serve` on the embedded defaults (development keys and
# certificates, ephemeral ports) in a scratch directory, runs schemathesis
# with the teller's client certificate against /v1/openapi.yaml, and stops
# the gateway. Fails if any answer is a 5xx or outside the contract (status
# code, content type, headers, body schema) or if schema-violating requests
# are accepted.
#
# Usage: scripts/schemathesis.sh [extra schemathesis arguments]
#   SCHEMATHESIS_MAX_EXAMPLES (default 40) bounds the examples per operation.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
version=4.32.5
venv="$root/.services/schemathesis"

if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -q "$version"; then
  echo "schemathesis: installing $version into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "schemathesis==$version"
fi

work=$(mktemp -d)
pid=""
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

go build -o "$work/pingate" ./cmd/pingate
cd "$work"
./pingate serve --acquirer-addr 127.0.0.1:0 --http-addr 127.0.0.1:0 --admin-addr 127.0.0.1:0 >serve.out 2>serve.log &
pid=$!

# The branch API logs its address; /readyz says when the issuer has signed on.
addr="" http=""
for _ in $(seq 1 150); do
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "schemathesis: pingate serve exited:" >&2
    cat serve.log >&2
    exit 1
  fi
  addr=$(python3 - serve.log <<'EOF'
import json, sys
for line in open(sys.argv[1]):
    try:
        r = json.loads(line)
    except ValueError:
        continue
    if r.get("msg") == "branch api listening":
        print(r["addr"])
        break
EOF
)
  http=$(sed -n 's/.*http \([0-9.:]*\).*/\1/p' serve.out | head -1)
  if [ -n "$addr" ] && [ -n "$http" ] && curl -fsS "http://$http/readyz" >/dev/null 2>&1; then
    break
  fi
  sleep 0.2
done
if [ -z "$addr" ]; then
  echo "schemathesis: the branch API did not start" >&2
  cat serve.log >&2
  exit 1
fi

certs="$work/var/dev-certs"
status=0
"$venv/bin/schemathesis" run "https://$addr/v1/openapi.yaml" \
  --url "https://$addr" \
  --request-cert "$certs/teller.pem" --request-cert-key "$certs/teller-key.pem" \
  --tls-verify "$certs/ca.pem" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,negative_data_rejection \
  --phases examples,coverage,fuzzing \
  --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-40}" \
  --workers 1 \
  --no-color \
  "$@" || status=$?
if grep -q '"level":"ERROR"' serve.log; then
  echo "schemathesis: the gateway logged errors:" >&2
  grep '"level":"ERROR"' serve.log >&2
  status=1
fi
exit "$status"
