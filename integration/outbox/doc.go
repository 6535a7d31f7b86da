// Package outbox is pingate's transactional outbox for outcome events: a
// durable local journal that the request path appends to, and a relay that
// drains it to Kafka.
//
// The journal is a cockroachdb/pebble store (an LSM with a write-ahead log;
// pebble's own format, nothing invented here). Entries are keyed by a
// big-endian sequence number, so key order is append order; a value is the
// exact Kafka record in a length-prefixed binary form (record.go; values in
// the first, JSON, form are still read). Publish commits
// the event as its own batch with a synced commit; pebble's commit pipeline
// makes concurrent synced commits share one fsync of the write-ahead log
// (group commit). Each caller is answered only after that fsync, or with
// ErrStalled once Config.WriteTimeout passes without it: the acquirer is
// answered only once the outcome is on disk (routing.OutcomeSink).
//
// The relay sends entries in order with segmentio/kafka-go (acks from all
// in-sync replicas, key-hash partitioning by card token), letting them gather
// for RelayConfig.Linger before a batch that is not full, records the
// acknowledged sequence number in the store after each batch and deletes the
// delivered entries. Delivery is at least once: after a crash between a
// Kafka acknowledgement and the progress write, the batch is sent again with
// the same record bytes, hence the same CloudEvents ce_id. Consumers dedupe
// by ce_id. Events are CloudEvents 1.0 records (package events).
//
// Without brokers the journal runs in journal-only mode (the embedded
// default): events stay in the journal, the oldest deleted past Config.Retain.
//
// Metrics are reported through the OpenTelemetry metric API under the scope
// "pingate/outbox". See docs/events.md for the operator's view.
package outbox
