// Package branchapi is pingate's branch and self-service channel: an HTTPS
// JSON API (HTTP/1.1 over TLS 1.2 or 1.3, RFC 9110) through which bank branch
// teller systems and self-service kiosks change, reset and unblock PINs. It
// is a front end to the same routing.Flow the ISO 8583 listener uses: limits,
// PIN block translation, the issuer round trip, the outcome event and the
// trace are the flow's, with channel "branch" or "kiosk".
//
// Standards and contracts:
//
//   - the API contract is the OpenAPI 3.1 document docs/openapi.yaml, served
//     at GET /v1/openapi.yaml (an identical copy is embedded here);
//   - errors are RFC 9457 problem details (application/problem+json) with a
//     stable type per error, "urn:pingate:problem:<slug>", that never repeat
//     a PAN, a PIN block or any other value from the request;
//   - PIN blocks are ISO 9564-1 blocks (formats 0, 1, 3, 4) in hexadecimal,
//     enciphered by the branch's PIN pad under the institution's zone PIN key:
//     no clear PIN ever crosses HTTP;
//   - every client presents a certificate (mutual TLS, RFC 8446 / RFC 5246)
//     issued by a configured CA, not expired and not revoked (CRL, RFC 5280,
//     or a configured serial list); its subject maps to one configured
//     identity (institution, branch, roles). Any other client gets the TLS
//     alert and nothing else;
//   - Idempotency-Key (draft-ietf-httpapi-idempotency-key-header): a retry
//     with the same key and request gets the first answer, never a second
//     operation; the same key with another request is refused;
//   - dual control: where an institution asks for it, a forgotten-PIN reset
//     waits (202) until a supervisor of the branch other than the submitter
//     approves it within the approval window; the approval is recorded in the
//     outcome event as its supervisor;
//   - a reset either carries a new PIN block from the PIN pad, or asks for a
//     generated PIN, which the security module draws, sends to the issuer
//     under its key and, once the issuer has approved, prints on a PIN mailer
//     (pinblock.MailerPrinter): the only place that PIN is ever in clear.
//
// Operations, idempotency records and pending approvals live in a Store: in
// memory for one instance, or in Redis (RedisStore), shared by every
// instance, when the gateway's limits run on Redis. A pending reset's PIN
// block never leaves the instance that took it; Redis holds only who may
// approve and by when (docs/branch-api.md).
package branchapi
