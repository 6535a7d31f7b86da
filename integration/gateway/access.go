package gateway

import (
	"pingate/integration/issuersim"
	"pingate/integration/outbox"
	"pingate/integration/payshield"
	"pingate/integration/reversalstore"
	"pingate/integration/telemetry"
	"pingate/pinblock"
)

// What a running gateway shows of itself to the commands that drive it (the
// demo, the load tool) and to tests. None of it carries key material.

// AcquirerAddr is the ISO 8583 acquirer listener's address.
func (g *Gateway) AcquirerAddr() string { return g.acqAddr }

// HTTPAddr is the address of the health and metrics port.
func (g *Gateway) HTTPAddr() string { return g.httpAddr }

// Config is the configuration the gateway started with: defaults applied,
// the issuer host "issuer-sim" resolved to the in-process simulator's
// address, its routes read back from the BIN table it started with (in
// prefix order). A reload does not change it.
func (g *Gateway) Config() Config {
	c := g.cfg
	c.Routing.Routes = g.routes.Routes()
	return c
}

// Sim is the in-process issuer simulator (issuer_sim), or nil.
func (g *Gateway) Sim() *issuersim.Sim { return g.sim }

// SimAddr is the in-process issuer simulator's address, or "".
func (g *Gateway) SimAddr() string { return g.simAddr }

// SignedOn reports, by issuer id, whether the issuer has a signed-on link.
func (g *Gateway) SignedOn() map[string]bool { return g.links.SignedOn() }

// Journal is the outcome journal: every event the gateway recorded.
func (g *Gateway) Journal() *outbox.Journal { return g.journal }

// Reversals is the store of reversal advices owed to issuers.
func (g *Gateway) Reversals() *reversalstore.Store { return g.reversals }

// SecurityModule is the module the flow translates PINs with: the software
// module, or with security.module payshield the payShield one.
func (g *Gateway) SecurityModule() pinblock.SecurityModule { return g.sm }

// PayShield is the payShield client and its key table with security.module
// payshield; nil, nil otherwise.
func (g *Gateway) PayShield() (*payshield.Client, *payshield.Keys) { return g.ps, g.psKeys }

// BranchInfo describes the running branch API.
type BranchInfo struct {
	Addr string
	// CertDir holds the development certificates in use, "" when
	// configured ones are (branchapi.DevCAFile and the other Dev* names).
	CertDir string
	// Spool is the directory PIN mailers are printed to.
	Spool string
	// Shared: operations, idempotency keys and pending approvals are in
	// Redis, shared with the other instances (limits.backend redis);
	// otherwise in this process's memory.
	Shared bool
}

// Branch describes the branch API; ok is false when it is off.
func (g *Gateway) Branch() (b BranchInfo, ok bool) {
	if g.branch == nil {
		return BranchInfo{}, false
	}
	return BranchInfo{Addr: g.branch.addr, CertDir: g.branch.certDir, Spool: g.branch.spool, Shared: g.branch.shared != nil}, true
}

// Telemetry is the installed OpenTelemetry SDK (nil before Run set it up).
func (g *Gateway) Telemetry() *telemetry.Telemetry { return g.tel }
