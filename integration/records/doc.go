// Package records is the back office's records service: it consumes
// pingate's outcome topic (CloudEvents 1.0 over Kafka, binary content mode,
// docs/events.md) and keeps every card's PIN-operation history in PostgreSQL
// exactly once, and it answers the cardholder's inquiry over HTTPS with
// mutual TLS (docs/records-openapi.yaml).
//
// Exactly once: each batch read from one partition is applied in ONE
// PostgreSQL transaction that inserts the event rows (deduplicated by ce_id),
// the per-card history rows, applies reversals (ce_reverses) to the event they
// undo, and moves that partition's offset in consumer_offsets. The offset in
// the database is the truth; the offset committed to Kafka is only a hint for
// tools. On every partition assignment the consumer seeks to the database
// offset. Records it does not understand (unknown ce_type, malformed) are
// kept verbatim and counted, never dropped.
//
// Cards are identified by the card token only (docs/events.md); the service
// stores no PAN, not even the masked one, and accepts none: the inquiry API
// takes a 32-hex-digit token. See docs/records.md.
package records
