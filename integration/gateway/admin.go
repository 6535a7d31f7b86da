package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"pingate/pinblock"
)

// The admin listener of `pingate serve` (admin.addr, default
// 127.0.0.1:8081), apart from the health and metrics port so that a load
// balancer or scraper that reaches one never reaches the other:
//
//	POST /admin/reload  reload the configuration (reload.go); 200 with a JSON
//	                    report, 422 when the configuration is refused (the
//	                    running one stays, also while shutting down), 500
//	                    when keys or limits could not be loaded.
//	GET  /admin/keys    the loaded key versions: id, usage, version and KCV,
//	                    never key material.
//	GET  /admin/events  the newest ?n= (1–1000, default 10) events in the
//	                    journal, as `pingate events tail --json` shows them:
//	                    masked PAN and card token, never a PIN or PAN.
//
// It has no authentication of its own: it must listen on loopback (the
// default), reached by operators through the host or `kubectl port-forward`.

const defaultAdminAddr = "127.0.0.1:8081"

// adminServer is the admin listener.
type adminServer struct {
	srv  *http.Server
	addr string
}

// startAdmin binds the admin listener c describes, unless it is disabled;
// Run serves it and Shutdown stops it.
func (g *Gateway) startAdmin(c AdminConfig) error {
	if c.Disabled {
		return nil
	}
	addr := c.Addr
	if addr == "" {
		addr = defaultAdminAddr
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return errors.Join(errors.New("admin listener"), err)
	}
	a := &adminServer{
		srv:  opsServer(g.adminHandler()),
		addr: ln.Addr().String(),
	}
	g.ops.mu.Lock()
	g.ops.admin = a
	g.ops.mu.Unlock()
	g.serve("admin listener", ln, func(context.Context) error { return a.srv.Serve(ln) })
	return nil
}

// AdminAddr is the admin listener's address, or "" when it is disabled.
func (g *Gateway) AdminAddr() string {
	g.ops.mu.Lock()
	defer g.ops.mu.Unlock()
	if g.ops.admin == nil {
		return ""
	}
	return g.ops.admin.addr
}

func (g *Gateway) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /admin/reload", func(w http.ResponseWriter, _ *http.Request) {
		rep, err := g.Reload("admin")
		if err != nil {
			status, result := http.StatusInternalServerError, ReloadFailed
			if errors.Is(err, ErrReloadRefused) {
				status, result = http.StatusUnprocessableEntity, ReloadRefused
			}
			adminJSON(w, status, map[string]string{"result": result, "error": err.Error()})
			return
		}
		adminJSON(w, http.StatusOK, rep)
	})
	mux.HandleFunc("GET /admin/events", func(w http.ResponseWriter, r *http.Request) {
		n := 10
		if v := r.URL.Query().Get("n"); v != "" {
			var err error
			if n, err = strconv.Atoi(v); err != nil || n < 1 || n > MaxAdminEvents {
				adminJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("n must be 1 to %d", MaxAdminEvents)})
				return
			}
		}
		lines, err := g.recentEvents(n)
		if err != nil {
			adminJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
			return
		}
		adminJSON(w, http.StatusOK, lines)
	})
	mux.HandleFunc("GET /admin/keys", func(w http.ResponseWriter, _ *http.Request) {
		type key struct {
			ID      string    `json:"id"`
			Usage   string    `json:"usage"`
			Version int       `json:"version"`
			KCV     string    `json:"kcv"`
			Loaded  time.Time `json:"loaded"`
		}
		var list []pinblock.KeyInfo
		if g.ps != nil {
			// HSM mode: the module's keys, under the HSMs' LMK.
			for _, k := range g.psKeys.List() {
				list = append(list, k.Info())
			}
		} else {
			list = g.ring.List()
		}
		out := make([]key, 0, len(list))
		for _, k := range list {
			out = append(out, key{ID: k.ID, Usage: string(k.Usage), Version: k.Version, KCV: k.KCV, Loaded: k.Created})
		}
		adminJSON(w, http.StatusOK, out)
	})
	return mux
}

// MaxAdminEvents bounds one GET /admin/events (?n=).
const MaxAdminEvents = 1000

// recentEvents decodes the newest n events of the running journal, oldest
// first.
func (g *Gateway) recentEvents(n int) ([]EventLine, error) {
	st := g.journal.Stats()
	floor := st.Last - uint64(st.Depth) // entries floor+1 .. Last are held
	from := floor + 1
	if st.Last >= uint64(n) && st.Last-uint64(n)+1 > from {
		from = st.Last - uint64(n) + 1
	}
	entries, err := g.journal.Entries(from, n)
	if err != nil {
		return nil, err
	}
	evs, err := DecodeEntries(entries)
	if err != nil {
		return nil, err
	}
	lines := make([]EventLine, 0, len(evs))
	for _, ev := range evs {
		lines = append(lines, EventLine{ev, ev.Reverses})
	}
	return lines, nil
}

func adminJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
