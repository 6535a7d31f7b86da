package gateway

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"time"
)

// opsIdleTimeout closes a keep-alive connection of the health or the admin
// listener that stays idle this long (longer than a Prometheus scrape
// interval), so that no client holds one, and its file descriptor, for
// ever. A variable for the tests.
var opsIdleTimeout = 2 * time.Minute

// opsServer is the HTTP server of the health or the admin listener: a
// request's headers within 5 s and the whole request within 10 s, and an idle
// keep-alive connection closed after opsIdleTimeout.
func opsServer(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, IdleTimeout: opsIdleTimeout}
}

// httpHandler serves the HTTP port: liveness, readiness and metrics.
func (g *Gateway) httpHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", g.readyz)
	mux.Handle("GET /metrics", g.tel.MetricsHandler())
	return mux
}

// readyz is ready only when keys are loaded, every issuer has a signed-on
// link, the journal directory is writable, and the journal admits work (no
// stalled or failed write, free space above its reserve, depth below its
// limit): the reason it does not is shown under "journal".
func (g *Gateway) readyz(w http.ResponseWriter, _ *http.Request) {
	checks := map[string]string{}
	ready := true
	switch {
	case g.ps != nil && len(g.psKeys.List()) == 0, g.ps == nil && len(g.ring.List()) == 0:
		checks["keys"], ready = "no keys loaded", false
	default:
		checks["keys"] = "ok"
	}
	if g.ps != nil {
		if err := g.ps.Ready(); err != nil {
			checks["hsm"], ready = "no reachable HSM", false
		} else {
			checks["hsm"] = "ok"
		}
	}
	signed := g.links.SignedOn()
	ids := make([]string, 0, len(signed))
	for id := range signed {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		if signed[id] {
			checks["issuer:"+id] = "signed on"
		} else {
			checks["issuer:"+id], ready = "no signed-on link", false
		}
	}
	probe := filepath.Join(g.cfg.Events.JournalDir, ".ready-probe")
	if err := os.WriteFile(probe, []byte("ok"), 0o600); err != nil {
		checks["journal"], ready = "not writable", false
	} else if err := g.journal.Health(); err != nil {
		_ = os.Remove(probe)
		checks["journal"], ready = err.Error(), false
	} else {
		_ = os.Remove(probe)
		checks["journal"] = "ok"
	}
	if err := g.reversals.Health(); err != nil {
		checks["reversals"], ready = err.Error(), false
	} else {
		checks["reversals"] = "ok"
	}
	w.Header().Set("Content-Type", "application/json")
	if !ready {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"ready": ready, "checks": checks})
}
