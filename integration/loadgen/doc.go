// Package loadgen drives a pingate gateway with PIN-operation traffic over
// TCP, as ATM network switches and branch front ends would, and measures it:
// Run is the load command, RunBaseline, ServeEcho and ServeRelay the
// bench-baseline command (the same 0100/0110 round trip with nothing but
// moov-io/iso8583 and TCP, the ratio's denominator: one hop to an echo
// server, or two through a bare relay). Both runs can report the CPU per
// answered request of the processes they name (Params.CPU, from /proc). Client and Op speak
// the acquirer dialect (docs/iso8583-acquirer.md) for the demo and the tests.
//
// Development and test only: requests carry PINs enciphered under the
// published development keys (docs/dev-keys.md), for the issuer simulator's
// card population (integration/issuersim).
package loadgen
