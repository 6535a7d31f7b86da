// Package gateway is pingate's serve runtime: it wires every adapter (the
// ISO 8583 acquirer listener, the branch HTTPS API, the security module,
// issuer links, the outcome journal and its Kafka relay, the reversal store,
// the limiter, telemetry) around routing.Flow, and owns the configuration
// that describes them (Config, LoadConfig, Validate), hot reload (Reload),
// the admin listener and the health and metrics port.
//
// The life cycle follows nats-server's: New builds everything and binds
// every listener, Run serves until its context ends, a listener fails or
// Shutdown begins, and Shutdown drains in-flight work (as net/http's
// Server.Shutdown does) and stops every goroutine the gateway started.
// `pingate serve` is New, Run and Shutdown around signal handling; tests
// start gateways in-process with package gatewaytest.
//
// Imports run cmd → integration → routing → {iso8583, pinblock}: this
// package may import routing, iso8583, pinblock and the other integration
// packages, never cmd.
package gateway
