#!/usr/bin/env python3
"""Read a Prometheus text exposition with prometheus_client's own parser.

It is how a bank's Prometheus reads pingate's /metrics, independent of the Go
client library that writes it: prometheus_client.parser
(text_string_to_metric_families, PyPI prometheus-client) parses the file
named on the command line, and the families are printed on stdout as one
JSON list:

  [{"name", "type", "unit", "help", "samples": [{"name", "labels", "value"}]}]

A file that does not parse exits 1 with the parser's error. cmd/pingate's
TestPyMetricsParser runs it; scripts/test-deps.sh installs the library.
"""

import json
import sys

from prometheus_client.parser import text_string_to_metric_families


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        text = f.read()
    out = []
    try:
        for fam in text_string_to_metric_families(text):
            out.append({
                "name": fam.name, "type": fam.type, "unit": fam.unit, "help": fam.documentation,
                "samples": [{"name": s.name, "labels": s.labels, "value": s.value} for s in fam.samples],
            })
    except ValueError as e:
        print("metrics do not parse: %s" % e, file=sys.stderr)
        return 1
    json.dump(out, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
