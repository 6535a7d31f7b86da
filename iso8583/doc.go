// Package iso8583 holds pingate's two ISO 8583:1987 wire dialects and the
// network plumbing that carries them.
//
// The dialects are moov-io/iso8583 message specs held as data, one spec file
// each in moov's spec-builder format (dialect.go): AcquirerDialect
// (dialects/acquirer.yaml) is the ASCII dialect our ATMs and branch systems
// speak, IssuerDialect (dialects/issuer.yaml) the packed binary (BCD) dialect
// of the card-issuing hosts, and a bank's own issuer dialect is one more file
// loaded at start-up into a Registry (ParseDialect checks that it carries
// what pingate sends). All use the same field numbers with the same
// meanings, so one typed view, Fields, serves them; Pack and Unpack convert
// between them and return errors that never repeat the message bytes. The
// field use per message type is data too (usage.go) and is checked by
// Fields.Check.
//
// Standards followed: ISO 8583-1:1987 (message structure, data element
// numbering, MTIs, response codes), ISO 9564-1 for the PIN blocks carried in
// DE 52 and DE 125 (formats 0, 1, 3 and 4; the 16-byte format 4 block is why
// DE 52 deviates from the 1987 fixed b64 — see AcquirerSpec), and the
// customary 2-byte binary or 4-digit ASCII length framing of ISO 8583 over TCP
// (frame.go). docs/iso8583-acquirer.md and docs/iso8583-issuer.md describe
// the dialects field by field, with golden messages kept true by the tests.
//
// The connection side is primitives only: Server hands every frame from an
// acquirer connection to a Handler in its own goroutine and serializes the
// responses; Conn is a client link to an issuer with a read loop. Matching
// responses to requests, timeouts and business rules belong to routing.
//
// Secrecy: PANs are shown only masked (MaskPAN), and PIN blocks (DE 52,
// DE 125) and key exchange data (DE 123) are redacted whole in every dump
// (Redact, Fields.String). Pack, Unpack and the framing functions never put
// message bytes in an error.
package iso8583
