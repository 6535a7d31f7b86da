#!/usr/bin/env python3
"""An OTLP/HTTP trace receiver independent of the Go OpenTelemetry SDK.

It is what a bank's collector sees of pingate's trace export: it takes
POST /v1/traces as the OTLP/HTTP specification describes it (a protobuf
ExportTraceServiceRequest, Content-Type application/x-protobuf, optionally
Content-Encoding gzip), decodes it with the opentelemetry-proto package's
generated classes (PyPI, the OpenTelemetry project's own .proto files), and
writes one JSON object a line per span to --out:

  {"trace_id", "span_id", "parent_span_id" (lowercase hex, "" for a root),
   "name", "kind" (SPAN_KIND_SERVER, ...), "attributes" {key: value},
   "events" [{"name", "attributes"}], "status" {"code", "message"},
   "resource" {key: value}, "scope", "content_type", "content_encoding"}

It prints "listening HOST:PORT" on stdout once it accepts connections.
--delay S holds every answer S seconds (a slow collector); --status N answers
every export with HTTP status N (a failing collector). It runs until killed.
cmd/pingate's TestOTLPExportPy starts it; scripts/test-deps.sh installs the
library.
"""

import argparse
import gzip
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.trace.v1 import trace_pb2


def any_value(v):
    """The Python value of an OTLP AnyValue."""
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in v.kvlist_value.values}
    if kind == "bytes_value":
        return v.bytes_value.hex()
    return getattr(v, kind)


def attrs(kvs):
    return {kv.key: any_value(kv.value) for kv in kvs}


class Receiver(BaseHTTPRequestHandler):
    out = None
    lock = threading.Lock()
    delay = 0.0
    status = 200

    def log_message(self, fmt, *args):  # quiet: the test reads --out
        pass

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        if self.path != "/v1/traces":
            self.send_error(404)
            return
        ctype = self.headers.get("Content-Type", "")
        encoding = self.headers.get("Content-Encoding", "")
        if self.delay:
            time.sleep(self.delay)
        if self.status != 200:
            self.send_response(self.status)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding not in ("", "identity"):
            self.send_error(415, "content encoding " + encoding)
            return
        if not ctype.startswith("application/x-protobuf"):
            self.send_error(415, "content type " + ctype)
            return
        req = trace_service_pb2.ExportTraceServiceRequest()
        req.ParseFromString(body)
        lines = []
        for rs in req.resource_spans:
            resource = attrs(rs.resource.attributes)
            for ss in rs.scope_spans:
                for s in ss.spans:
                    lines.append(json.dumps({
                        "trace_id": s.trace_id.hex(),
                        "span_id": s.span_id.hex(),
                        "parent_span_id": s.parent_span_id.hex(),
                        "name": s.name,
                        "kind": trace_pb2.Span.SpanKind.Name(s.kind),
                        "attributes": attrs(s.attributes),
                        "events": [{"name": e.name, "attributes": attrs(e.attributes)} for e in s.events],
                        "status": {"code": trace_pb2.Status.StatusCode.Name(s.status.code),
                                   "message": s.status.message},
                        "resource": resource,
                        "scope": ss.scope.name,
                        "content_type": ctype,
                        "content_encoding": encoding,
                    }, sort_keys=True))
        with self.lock:
            for line in lines:
                self.out.write(line + "\n")
            self.out.flush()
        answer = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--addr", default="127.0.0.1:0")
    ap.add_argument("--out", required=True)
    ap.add_argument("--delay", type=float, default=0.0)
    ap.add_argument("--status", type=int, default=200)
    a = ap.parse_args()
    host, port = a.addr.rsplit(":", 1)
    Receiver.out = open(a.out, "a", encoding="utf-8")
    Receiver.delay, Receiver.status = a.delay, a.status
    srv = ThreadingHTTPServer((host, int(port)), Receiver)
    srv.daemon_threads = True
    print("listening %s:%d" % srv.server_address[:2], flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
