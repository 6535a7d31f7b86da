// Package loadgen drives a pingate gateway with PIN-operation traffic over
// TCP, as ATM network switches and branch front ends would, and measures it:
// Run is the load command, RunBaseline and ServeEcho the bench-baseline
// command (the same 0100/0110 round trip with nothing
// but moov-io/iso8583 and TCP, the ratio's denominator). Client and Op speak
// the acquirer dialect (docs/iso8583-acquirer.md) for the demo and the tests.
//
// Development and test only: requests carry PINs enciphered under the
// published development keys (docs/dev-keys.md), for the issuer simulator's
// card population (integration/issuersim).
package loadgen
