#!/usr/bin/env python3
"""An independent back-office consumer of pingate's outcome events.

A social-security back office that keeps each card's PIN history reads the
gateway's Kafka topic the way an outside team would: from docs/events.md and
docs/events.schema.json alone, with third-party libraries only (confluent-kafka
for Kafka, the CloudEvents Python SDK's Kafka binding, jsonschema for the
Draft 2020-12 schema). It shares no code with the gateway.

It reads the topic from the beginning (its own group id, all partitions), until
it holds --count records and has reached the end of every partition, or until
--timeout. Every record is checked against every statement of the docs that a
consumer can check: the CloudEvents headers and their formats, the record key
against the card token, ce_subject and ce_partitionkey, the body against the
schema, ce_type against the table for (operation, outcome), the response code
of each outcome class, ce_reverses, the partition a key lands in, duplicates by
ce_id, and that no PAN or PIN block given with --pan / --pin-block shows
anywhere in a record, in plain, hex or base64 form.

It prints a JSON summary on stdout (counts by ce_type, outcome, operation, ...)
and exits 1 naming every violation on stderr (and in the summary). A message
never echoes a value that could hold a PAN: records are named by
partition@offset, fields by name, and only values that passed a strict format
check (a UUID, a ce_type of the table, a response code) are shown.

Usage:
  backoffice_consumer.py --bootstrap HOST:PORT --topic T --count N
      [--timeout S] [--group G] [--instance NAME] [--pan DIGITS]...
      [--pin-block HEX]... [--secrets FILE] [--schema docs/events.schema.json]
"""

import argparse
import base64
import calendar
import json
import re
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import jsonschema
from cloudevents.core.bindings import kafka as cekafka
from cloudevents.core.formats.json import JSONFormat
from confluent_kafka import OFFSET_BEGINNING, TIMESTAMP_CREATE_TIME, Consumer, KafkaError, TopicPartition

DOCS = Path(__file__).resolve().parent.parent / "docs"

# docs/events.md, "Event types": ce_type for (operation, outcome).
OPERATIONS = ("change", "reset", "unblock")
OUTCOMES = ("approved", "declined", "reversed", "limited", "rejected", "failed")
APPROVED_TYPE = {"change": "pingate.pin.changed.v1", "reset": "pingate.pin.reset.v1", "unblock": "pingate.pin.unblocked.v1"}


def event_type(operation, outcome):
    if outcome == "approved":
        return APPROVED_TYPE[operation]
    return f"pingate.pin.{operation}.{outcome}.v1"


TYPES = {event_type(op, oc): (op, oc) for op in OPERATIONS for oc in OUTCOMES}

# docs/events.md, outcome classes: the response codes each class carries
# (a reversed event's depends on its reason).
CODES = {
    "declined": {"14", "55", "57", "65", "75", "P6"},
    "limited": {"61", "65", "75", "91"},
    "rejected": {"14", "30", "58", "94"},
    "failed": {"91", "96"},
}
# Reasons whose reversed event names the event it undoes in ce_reverses; such
# an event may be recorded again under its ce_id, differing only in these
# headers and body fields (docs/events.md, "At least once").
REVERSING = ("acquirer_reversal", "outcome_not_recorded")
RERECORDED_HEADERS = {"ce_time", "ce_source", "traceparent"}
RERECORDED_FIELDS = {"received", "completed", "trace_id"}

# The headers docs/events.md lists for a record; anything else is counted.
KNOWN_HEADERS = {
    "ce_specversion", "ce_id", "ce_type", "ce_source", "ce_time", "ce_subject",
    "ce_partitionkey", "content-type", "traceparent", "ce_reverses",
}
REQUIRED_HEADERS = ("ce_specversion", "ce_id", "ce_type", "ce_source", "ce_time", "content-type")

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
TOKEN_RE = re.compile(r"^[0-9a-f]{32}$")
SOURCE_RE = re.compile(r"^/pingate/(\S+)$")
TIME_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?Z$")
TRACEPARENT_RE = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
REASON_RE = re.compile(r"^[a-z0-9_]{1,64}$")
# "free-text fields [never] hold a run of 12+ decimal or 16+ hex digits".
DIGIT_RUN = re.compile(r"[0-9]{12,}")
HEX_RUN = re.compile(r"[0-9A-Fa-f]{16,}")
FREE_TEXT = ("reason", "acquirer", "terminal", "issuer", "teller", "supervisor")


def parse_time(text):
    """Returns (nanoseconds since the epoch, fraction digits) of an RFC 3339
    UTC time ("Z", optional fraction of at most 9 digits), or None."""
    m = TIME_RE.match(text)
    if not m:
        return None
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    if not (1 <= month <= 12 and 1 <= day <= 31 and hour < 24 and minute < 60 and second < 60):
        return None
    try:
        secs = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
        time.strptime(text[:10], "%Y-%m-%d")  # rejects 2025-02-30
    except (ValueError, OverflowError):
        return None
    frac = m.group(7) or ""
    return secs * 1_000_000_000 + int(frac.ljust(9, "0") or "0"), len(frac)


def kafka_hash_partition(key, partitions):
    """The partition kafka-go's Hash balancer (Sarama's hashPartitioner) picks:
    FNV-1a 32 of the key, as a signed 32-bit int, remainder by the partition
    count, made non-negative."""
    h = 0x811C9DC5
    for b in key:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    signed = h - (1 << 32) if h & 0x80000000 else h
    return abs(signed) % partitions


def secret_forms(pans, pin_blocks):
    """Byte strings that must not occur in any record: each PAN in ASCII, as
    hex of its ASCII, as base64 of its ASCII and of its packed-BCD bytes; each
    PIN block as hex (both cases), raw bytes and base64."""
    forms = []
    for pan in pans:
        raw = pan.encode()
        forms.append(("PAN", raw))
        forms.append(("PAN", raw.hex().encode()))
        forms.append(("PAN", raw.hex().upper().encode()))
        forms.append(("PAN", base64.b64encode(raw).rstrip(b"=")))
        bcd = bytes.fromhex(pan + ("F" if len(pan) % 2 else ""))
        forms.append(("PAN", bcd))
        forms.append(("PAN", base64.b64encode(bcd).rstrip(b"=")))
    for block in pin_blocks:
        raw = bytes.fromhex(block)
        forms.append(("PIN block", block.lower().encode()))
        forms.append(("PIN block", block.upper().encode()))
        forms.append(("PIN block", raw))
        forms.append(("PIN block", base64.b64encode(raw).rstrip(b"=")))
    return forms


def json_strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from json_strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from json_strings(v)


class Checker:
    def __init__(self, schema, partitions, instance, pans, pin_blocks):
        self.validator = jsonschema.Draft202012Validator(
            schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
        )
        self.partitions = partitions
        self.instance = instance
        self.pans = pans
        self.secrets = secret_forms(pans, pin_blocks)
        self.violations = []
        self.records = 0
        self.first = {}  # ce_id -> (where, raw record, parsed record)
        self.duplicates = 0
        self.counts = {name: Counter() for name in (
            "by_type", "by_outcome", "by_operation", "by_channel", "by_response_code",
            "by_reason", "by_source", "by_partition", "time_fraction_digits", "unlisted_headers",
        )}
        self.without_card = 0
        self.with_trace = 0
        self.reverses = []  # (where, ce_id, reason, ce_reverses, body, key) of each reversal event

    def fail(self, where, msg):
        self.violations.append(f"{where}: {msg}")

    def check(self, msg):
        """Checks one confluent_kafka Message."""
        self.records += 1
        where = f"p{msg.partition()}@{msg.offset()}"
        key = msg.key()
        value = msg.value() or b""
        headers = msg.headers() or []
        self.counts["by_partition"][str(msg.partition())] += 1

        hdr = {}
        for name, raw in headers:
            if name in hdr:
                self.fail(where, f"header {name!r} appears more than once" if name in KNOWN_HEADERS else "a header appears more than once")
            raw = raw or b""
            try:
                hdr[name] = raw.decode("utf-8")
            except UnicodeDecodeError:
                self.fail(where, f"header {name!r} is not UTF-8" if name in KNOWN_HEADERS else "a header is not UTF-8")
                hdr[name] = ""
            if name not in KNOWN_HEADERS:
                self.counts["unlisted_headers"]["<other>" if DIGIT_RUN.search(name) else name] += 1
        for name in REQUIRED_HEADERS:
            if name not in hdr:
                self.fail(where, f"header {name} is missing")

        ce_id = hdr.get("ce_id", "")
        if UUID_RE.match(ce_id):
            where = f"{where} ce_id {ce_id}"
        elif "ce_id" in hdr:
            self.fail(where, "ce_id is not a UUID (lowercase 8-4-4-4-12 hex)")
        self.check_secrets(where, key, headers, value)

        raw_record = (key, tuple(headers), value, msg.timestamp())
        if ce_id and ce_id in self.first:
            self.duplicates += 1
            first_where, first_raw, first_body = self.first[ce_id]
            if raw_record != first_raw and not self.rerecorded(first_raw, first_body, raw_record):
                self.fail(where, f"re-sent ce_id differs from its first record at {first_where} "
                          "(docs: a re-send is byte-for-byte the first; only a reversal recorded again may differ, in its times, source and trace)")
            return
        parsed = self.check_record(where, msg, key, hdr, value)
        if ce_id:
            self.first[ce_id] = (where, raw_record, parsed)

    @staticmethod
    def rerecorded(first_raw, first_body, again):
        """Whether again is first_raw recorded again: a reversal that names
        the event it undoes, equal but for RERECORDED_HEADERS and
        RERECORDED_FIELDS."""
        if first_body is None or first_body.get("reason") not in REVERSING or again[0] != first_raw[0]:
            return False
        try:
            a, b = json.loads(first_raw[2]), json.loads(again[2])
        except ValueError:
            return False
        if not isinstance(b, dict) or {k: v for k, v in a.items() if k not in RERECORDED_FIELDS} != {
                k: v for k, v in b.items() if k not in RERECORDED_FIELDS}:
            return False
        def rest(headers):
            return sorted((n, v) for n, v in headers if n not in RERECORDED_HEADERS)
        return rest(first_raw[1]) == rest(again[1])

    def check_secrets(self, where, key, headers, value):
        parts = [("key", key or b""), ("value", value)]
        for name, raw in headers:
            parts.append(("a header name", name.encode("utf-8", "replace")))
            parts.append((f"header {name}" if name in KNOWN_HEADERS else "a header", raw or b""))
        found = set()
        for part, data in parts:
            squeezed = re.sub(rb"[ \-.]", b"", data)
            for kind, form in self.secrets:
                if form in data or (kind == "PAN" and form.isdigit() and form in squeezed):
                    self.fail(where, f"{part} holds a {kind} passed with --{'pan' if kind == 'PAN' else 'pin-block'}")
                    found.add(part)
                    break
        if "value" in found:
            return
        # JSON escapes (\u0034...) would hide digits from a byte search.
        try:
            strings = list(json_strings(json.loads(value)))
        except ValueError:
            return
        for s in strings:
            squeezed = re.sub(r"[ \-.]", "", s)
            if any(pan in squeezed for pan in self.pans):
                self.fail(where, "value holds a PAN passed with --pan (in a JSON string)")
                return

    def check_record(self, where, msg, key, hdr, value):
        if hdr.get("ce_specversion") not in (None, "1.0"):
            self.fail(where, "ce_specversion is not 1.0")
        if "content-type" in hdr and hdr["content-type"] != "application/json":
            self.fail(where, "content-type is not application/json")

        source = hdr.get("ce_source")
        if source is not None:
            m = SOURCE_RE.match(source)
            if not m or DIGIT_RUN.search(source):
                self.fail(where, "ce_source is not /pingate/<instance>")
                self.counts["by_source"]["<invalid>"] += 1
            else:
                self.counts["by_source"][source] += 1
                if self.instance and m.group(1) != self.instance:
                    self.fail(where, f"ce_source is {source}, want /pingate/{self.instance}")

        ce_time = None
        if "ce_time" in hdr:
            ce_time = parse_time(hdr["ce_time"])
            if ce_time is None:
                self.fail(where, "ce_time is not an RFC 3339 UTC time (Z, fraction of at most 9 digits)")
            else:
                self.counts["time_fraction_digits"][str(ce_time[1])] += 1

        ce_type = hdr.get("ce_type")
        if ce_type is not None and ce_type not in TYPES:
            self.fail(where, "ce_type is not a type of the table in docs/events.md")
            ce_type = None

        trace_id = None
        if "traceparent" in hdr:
            m = TRACEPARENT_RE.match(hdr["traceparent"])
            if not m or m.group(1) == "0" * 32 or m.group(2) == "0" * 16:
                self.fail(where, "traceparent is not a valid W3C traceparent (version 00)")
            else:
                trace_id = m.group(1)
                self.with_trace += 1

        # The SDK's Kafka binding must read the record as a CloudEvent.
        try:
            event = cekafka.from_binary(
                cekafka.KafkaMessage(headers={k: v.encode() for k, v in hdr.items()}, key=key, value=value),
                JSONFormat(),
            )
        except Exception as err:  # the SDK's messages may quote attribute values
            self.fail(where, f"the CloudEvents SDK refuses the record ({type(err).__name__})")
            return None
        if event.get_specversion() != "1.0" or event.get_datacontenttype() != "application/json":
            self.fail(where, "the CloudEvents SDK reads another specversion or datacontenttype")

        if msg.timestamp()[0] != TIMESTAMP_CREATE_TIME:
            self.fail(where, "record timestamp is not a producer (create) time")

        try:
            body = json.loads(value.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            self.fail(where, "value is not UTF-8 JSON")
            return None
        if event.get_data() != body:
            self.fail(where, "the CloudEvents SDK reads another body than the value")
        errors = sorted(self.validator.iter_errors(body), key=lambda e: list(e.absolute_path))
        for err in errors:
            # err.message quotes the value; name only the place and the rule.
            self.fail(where, f"body fails the schema at {err.json_path} ({err.validator})")
        if not isinstance(body, dict) or errors:
            return None
        return self.check_body(where, msg, key, hdr, ce_type, ce_time, trace_id, body)

    def check_body(self, where, msg, key, hdr, ce_type, ce_time, trace_id, body):
        op, oc, code = body["operation"], body["outcome"], body["response_code"]
        reason = body.get("reason")
        want = event_type(op, oc)
        if ce_type is not None and ce_type != want:
            self.fail(where, f"ce_type {ce_type} for operation {op}, outcome {oc}; the table says {want}")
        self.counts["by_type"][want] += 1
        self.counts["by_outcome"][oc] += 1
        self.counts["by_operation"][op] += 1
        self.counts["by_channel"][body["channel"]] += 1
        self.counts["by_response_code"][code] += 1
        self.counts["by_reason"][reason if reason is None or REASON_RE.match(reason) else "<invalid>"] += 1

        # Response codes of each outcome class (the schema checks 00 iff approved).
        if oc == "reversed":
            # An acquirer's reversal carries its 0420's code; every other 91.
            if reason != "acquirer_reversal" and code != "91":
                self.fail(where, f"reversed event of reason {reason} has code {code}, want 91")
        elif oc in CODES and code not in CODES[oc]:
            self.fail(where, f"{oc} event has code {code}, not one of {sorted(CODES[oc])}")

        # Key, card token, ce_subject, ce_partitionkey.
        token = body["card_token"]
        key_text = None
        if key is None:
            self.fail(where, "record has no key")
        else:
            try:
                key_text = key.decode("ascii")
            except UnicodeDecodeError:
                self.fail(where, "key is not ASCII")
        if token:
            if not TOKEN_RE.match(token):
                self.fail(where, "card_token is not 32 lowercase hex digits")
            if key_text != token:
                self.fail(where, "key is not the card token")
            if hdr.get("ce_subject") != token:
                self.fail(where, "ce_subject is not the card token")
            if hdr.get("ce_partitionkey") != token:
                self.fail(where, "ce_partitionkey is not the card token")
            if not body["masked_pan"]:
                self.fail(where, "masked_pan is empty although the event has a card token")
        else:
            self.without_card += 1
            if key_text != hdr.get("ce_id"):
                self.fail(where, "event without a card: key is not the event id")
            for name in ("ce_subject", "ce_partitionkey"):
                if name in hdr:
                    self.fail(where, f"event without a card carries {name}")
            if body["masked_pan"]:
                self.fail(where, "masked_pan is set although the event has no card token")
        if key is not None and self.partitions:
            want_p = kafka_hash_partition(key, self.partitions)
            if msg.partition() != want_p:
                self.fail(where, f"record is in partition {msg.partition()}, its key hashes (FNV-1a, Sarama) to {want_p}")

        masked = body["masked_pan"]
        if masked and self.pans:
            if not any(masked[:6] == p[:6] and masked[-4:] == p[-4:] for p in self.pans):
                self.fail(where, "masked_pan is not the first 6 and last 4 digits of a PAN passed with --pan")
            elif not any(len(masked) == len(p) and masked[:6] == p[:6] and masked[-4:] == p[-4:] for p in self.pans):
                self.fail(where, "masked_pan does not have one '*' per hidden digit of its PAN")

        # Times: received <= completed; ce_time is the body's completed;
        # the record timestamp (journal append) is not before it.
        received = parse_time(body["received"])
        completed = parse_time(body["completed"])
        for name, t in (("received", received), ("completed", completed)):
            if t is None:
                self.fail(where, f"{name} is not an RFC 3339 UTC time (Z, fraction of at most 9 digits)")
        if received and completed:
            if received[0] > completed[0]:
                self.fail(where, "received is after completed")
            if ce_time and hdr["ce_time"] != body["completed"]:
                self.fail(where, "ce_time is not the body's completed, written the same way")
            if msg.timestamp()[1] < completed[0] // 1_000_000:
                self.fail(where, "record timestamp (journal append) is before completed")

        if trace_id and body.get("trace_id") not in (None, trace_id):
            self.fail(where, "trace_id is not the trace-id of traceparent")

        # A reset or unblock that reached its issuer was keyed by a teller.
        if op in ("reset", "unblock") and oc in ("approved", "declined") and not body.get("teller"):
            self.fail(where, f"{oc} {op} without a teller")
        if reason == "acquirer_reversal" and received and completed and received[0] != completed[0]:
            self.fail(where, "acquirer_reversal event whose received is not its completed (both: when it was recorded)")
        if oc in ("approved", "declined") and not body.get("issuer"):
            self.fail(where, f"{oc} event names no issuer")
        for name in FREE_TEXT:
            text = body.get(name, "")
            if DIGIT_RUN.search(text) or HEX_RUN.search(text):
                self.fail(where, f"{name} holds a run of 12+ decimal or 16+ hex digits")

        # ce_reverses exactly on reversed events of the two reversing reasons.
        reverses = hdr.get("ce_reverses")
        if oc == "reversed" and reason in REVERSING:
            if reverses is None:
                self.fail(where, f"reversed event of reason {reason} has no ce_reverses")
            elif not UUID_RE.match(reverses):
                self.fail(where, "ce_reverses is not a UUID")
            elif reverses == hdr.get("ce_id"):
                self.fail(where, "ce_reverses names the event itself")
            else:
                self.reverses.append((where, hdr.get("ce_id"), reason, reverses, body, key))
        elif reverses is not None:
            self.fail(where, f"ce_reverses on a {oc} event of reason {reason}")
        return body

    def finish(self):
        undone = Counter()
        for where, _, reason, target, body, key in self.reverses:
            seen = self.first.get(target)
            if seen is None or seen[2] is None:
                if reason == "acquirer_reversal":
                    self.fail(where, f"ce_reverses names {target}, an event not read")
                continue  # outcome_not_recorded: "there may be no event with that id"
            t_body = seen[2]
            if reason == "acquirer_reversal" and t_body["outcome"] != "approved":
                self.fail(where, f"acquirer_reversal undoes {target}, a {t_body['outcome']} event, not an approved one")
            if t_body["outcome"] == "approved":
                undone[target] += 1
            # An acquirer's reversal carries the approved event's fields.
            same = ("operation", "card_token", "masked_pan")
            if reason == "acquirer_reversal":
                same += ("channel", "acquirer", "terminal", "issuer", "teller", "supervisor")
            for name in same:
                if t_body.get(name) != body.get(name):
                    self.fail(where, f"{name} differs from the event {target} it reverses")
            if seen[1][0] != key:
                self.fail(where, f"key differs from the event {target} it reverses")
        for target, n in undone.items():
            if n > 1:
                self.violations.append(f"ce_id {target}: reversed by {n} distinct events")

    def summary(self):
        out = {
            "records": self.records,
            "events": len(self.first),
            "duplicates": self.duplicates,
            "without_card": self.without_card,
            "with_traceparent": self.with_trace,
            "reversals": dict(Counter(r[2] for r in self.reverses)),
        }
        for name, c in self.counts.items():
            out[name] = {("null" if k is None else k): v for k, v in sorted(c.items(), key=lambda kv: str(kv[0]))}
        out["violations"] = self.violations
        return out


def consume(args, checker, partitions):
    consumer = Consumer({
        "bootstrap.servers": args.bootstrap,
        "group.id": args.group,
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
    })
    try:
        consumer.assign([TopicPartition(args.topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        at_end = set()
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            if checker.records >= args.count and len(at_end) == partitions:
                return True
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    at_end.add(msg.partition())
                    continue
                raise SystemExit(f"backoffice_consumer: kafka: {msg.error().str()}")
            at_end.discard(msg.partition())
            checker.check(msg)
        return checker.records >= args.count and len(at_end) == partitions
    finally:
        consumer.close()


def topic_partitions(args):
    probe = Consumer({"bootstrap.servers": args.bootstrap, "group.id": args.group})
    try:
        md = probe.list_topics(args.topic, timeout=min(args.timeout, 15))
    finally:
        probe.close()
    topic = md.topics.get(args.topic)
    if topic is None or topic.error is not None or not topic.partitions:
        raise SystemExit(f"backoffice_consumer: topic {args.topic} not found")
    ids = sorted(topic.partitions)
    if ids != list(range(len(ids))):
        raise SystemExit(f"backoffice_consumer: topic {args.topic} partitions are not 0..n-1")
    return len(ids)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--count", type=int, required=True, help="records to read at least")
    ap.add_argument("--timeout", type=float, default=60)
    ap.add_argument("--group", default=f"backoffice-{uuid.uuid4()}")
    ap.add_argument("--instance", help="the gateway instance every ce_source must name")
    ap.add_argument("--pan", action="append", default=[], help="a PAN the events must never carry")
    ap.add_argument("--pin-block", action="append", default=[], help="a PIN block (hex) the events must never carry")
    ap.add_argument("--secrets", help="a file of 'pan DIGITS' and 'pin-block HEX' lines, kept off the command line")
    ap.add_argument("--schema", default=str(DOCS / "events.schema.json"))
    args = ap.parse_args()
    if args.secrets:
        for n, line in enumerate(Path(args.secrets).read_text().splitlines(), 1):
            kind, _, val = line.strip().partition(" ")
            if kind == "pan":
                args.pan.append(val.strip())
            elif kind == "pin-block":
                args.pin_block.append(val.strip())
            elif kind:
                raise SystemExit(f"backoffice_consumer: {args.secrets} line {n}: want 'pan DIGITS' or 'pin-block HEX'")
    if any(not p.isdigit() or not 12 <= len(p) <= 19 for p in args.pan):
        raise SystemExit("backoffice_consumer: --pan takes 12 to 19 digits")
    if any(not re.fullmatch(r"(?:[0-9A-Fa-f]{2})+", b) for b in args.pin_block):
        raise SystemExit("backoffice_consumer: --pin-block takes hex digits")
    if "date-time" not in jsonschema.Draft202012Validator.FORMAT_CHECKER.checkers:
        raise SystemExit("backoffice_consumer: jsonschema cannot check date-time here (install rfc3339-validator)")

    schema = json.loads(Path(args.schema).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    partitions = topic_partitions(args)
    checker = Checker(schema, partitions, args.instance, args.pan, args.pin_block)
    if not consume(args, checker, partitions):
        checker.violations.append(
            f"timed out after {args.timeout:g}s with {checker.records} of {args.count} records"
        )
    checker.finish()
    out = checker.summary()
    out["partitions"] = partitions
    json.dump(out, sys.stdout, indent=1, sort_keys=True)
    print()
    for v in checker.violations:
        print(f"violation: {v}", file=sys.stderr)
    return 1 if checker.violations else 0


if __name__ == "__main__":
    sys.exit(main())
