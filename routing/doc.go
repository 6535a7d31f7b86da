// Package routing owns pingate's PIN-operation flow: the BIN table that picks
// an issuer for a card, the flow that validates a request, asks the limiter,
// translates the PIN blocks in the security module, sends the operation to the
// issuer over its ISO 8583 links, maps the answer to one response code and
// records the outcome — and the issuer links themselves: matching responses to
// requests, timeouts, failover and reversal advices.
//
// The limiter, the outcome sink and the reversal store are interfaces declared
// here and implemented in package integration (Redis, Kafka outbox, pebble).
package routing
