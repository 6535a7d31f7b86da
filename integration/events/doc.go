// Package events maps pingate outcome events (routing.Event) to Kafka records
// and back.
//
// A record is a CloudEvents 1.0 event in the binary content mode of the
// CloudEvents Kafka Protocol Binding 1.0: the context attributes travel as
// "ce_"-prefixed record headers (ce_id, ce_type, ce_source, ce_specversion,
// ce_time, ce_subject, ce_partitionkey), the data content type as the
// "content-type" header, the W3C Trace Context "traceparent" as a header of
// its own, and the event data — a JSON object described by the JSON Schema
// (draft 2020-12) in events.schema.json — as the record value. The record key
// is the card token, so every event of one card lands on one partition, in
// order.
//
// Standards followed: CloudEvents Specification 1.0.2; CloudEvents Kafka
// Protocol Binding 1.0.2 (binary content mode, key mapping); W3C Trace Context
// Level 1 (traceparent); RFC 3339 (timestamps); JSON Schema 2020-12.
//
// An event never carries a clear PIN, a PIN block or a full PAN: Encode
// refuses an event whose fields look like one (ErrUnsafeEvent), and the
// schema forbids any property it does not name.
package events
