#!/usr/bin/env bash
# Test-only dependencies outside Go. psec (knovichikhin, PyPI) is the
# independent implementation pinblock's cross-check test compares against;
# pyiso8583 (knovichikhin, PyPI) is the ISO 8583 library of the independent
# acquirer client scripts/pyiso8583_client.py and of the independent issuer
# host scripts/pyiso8583_issuer.py, which cmd/pingate's TestPyISO8583Client
# and TestPyISO8583Issuer run against a gateway; requests (psf, PyPI) is
# the HTTP client of the independent branch teller system
# scripts/branch_client.py, which TestPyBranchClient runs; confluent-kafka
# (Confluent, PyPI: librdkafka) reads the topic, cloudevents (the CloudEvents
# Python SDK) its Kafka binding reads each record, and jsonschema with
# rfc3339-validator (its date-time format check) validates the bodies for the
# independent back-office consumer scripts/backoffice_consumer.py, which
# TestPyBackOfficeConsumer runs; opentelemetry-proto (the OpenTelemetry
# project's generated protobuf classes, with protobuf) decodes the OTLP/HTTP
# exports of the independent trace receiver scripts/otlp_receiver.py, which
# cmd/pingate's TestOTLP*Py tests run, and prometheus-client's text-format
# parser reads /metrics for scripts/metrics_parse.py, which
# TestPyMetricsParser runs. Without them those tests skip (and fail under
# CI=true).
set -euo pipefail
if command -v python3 >/dev/null 2>&1; then
  python3 -c 'import psec' 2>/dev/null || python3 -m pip install --quiet 'psec==1.3.0'
  (cd / && python3 -c 'import iso8583.encoder') 2>/dev/null || python3 -m pip install --quiet 'pyiso8583==4.0.1'
  python3 -c 'import requests' 2>/dev/null || python3 -m pip install --quiet 'requests==2.34.2'
  python3 -c 'import confluent_kafka' 2>/dev/null || python3 -m pip install --quiet 'confluent-kafka==2.16.2'
  python3 -c 'import cloudevents.core.bindings.kafka' 2>/dev/null || python3 -m pip install --quiet 'cloudevents==2.2.0'
  python3 -c 'import jsonschema, rfc3339_validator' 2>/dev/null ||
    python3 -m pip install --quiet 'jsonschema==4.26.0' 'rfc3339-validator==0.1.4'
  python3 -c 'import opentelemetry.proto.collector.trace.v1.trace_service_pb2' 2>/dev/null ||
    python3 -m pip install --quiet 'opentelemetry-proto==1.45.2' 'protobuf==7.36.2'
  python3 -c 'import prometheus_client.parser' 2>/dev/null || python3 -m pip install --quiet 'prometheus-client==0.26.0'
fi
# pythales (PyPI, Tim Gabets) is the independent payShield simulator
# integration/payshield's TestPythales runs the client against. Its declared
# dependency pycrypto does not build on current Python; pycryptodome provides
# the same Crypto package, so pythales and its pure-Python helpers go in
# without dependencies beside it. Without them that test skips.
if command -v python3 >/dev/null 2>&1; then
  python3 -c 'import pythales.hsm' 2>/dev/null || {
    python3 -m pip install --quiet 'pycryptodome==4.4.0'
    python3 -m pip install --quiet --no-deps 'pythales==0.74' 'pynblock==0.26' 'tracetools==1.26'
  }
fi
# The jPOS acquirer client and issuer host scripts/jpos (org.jpos:jpos 2.1.9,
# Maven Central), which cmd/pingate's TestJPOSClient and TestJPOSIssuer* compile
# with mvn -o and run against a gateway: its dependencies and build plugins go into the local Maven
# repository here, so that go test builds offline (about 11 s the first time,
# 63 MB; under 3 s once they are there). Without a JDK or mvn that test skips
# (and fails under CI=true); scripts/services.sh installs both.
if command -v mvn >/dev/null 2>&1 && command -v javac >/dev/null 2>&1; then
  mvn -q -B -f "$(dirname "$0")/jpos/pom.xml" dependency:go-offline
fi
