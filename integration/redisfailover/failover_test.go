package redisfailover

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"pingate/integration/branchapi"
	"pingate/integration/events"
	"pingate/integration/gateway"
	"pingate/integration/gateway/gatewaytest"
	"pingate/integration/issuersim"
	"pingate/integration/loadgen"
	"pingate/integration/redislimit"
	"pingate/integration/testservers"
	"pingate/iso8583"
)

// cardLimit is the card operations per day of these tests' gateways.
const cardLimit = 3

// topology is one of the HA set-ups as a gateway is configured for it
// (docs/configuration.md, limits.*) and as the test finds and kills its
// master.
type topology struct {
	name       string
	mode       redislimit.Mode
	addrs      []string
	masterName string
	// master is the node to kill: the Sentinel set's master, or one of the
	// cluster's masters.
	master func(t *testing.T) string
	// failedOver reports whether the set-up serves again without killed.
	failedOver func(killed string) bool
}

func clusterTopology(h *testservers.RedisHA) topology {
	return topology{
		name: "cluster", mode: redislimit.ModeCluster, addrs: h.ClusterAddrs,
		master: func(t *testing.T) string {
			masters := clusterMasters(t, h)
			if len(masters) != 3 {
				t.Fatalf("cluster masters = %v, want 3\n%s", masters, h.Status())
			}
			return masters[0]
		},
		failedOver: func(killed string) bool {
			// Every surviving node has every slot served by a master other
			// than the killed one.
			for name, addr := range h.Nodes {
				if name == killed || name[0] != 'c' {
					continue
				}
				rdb := redis.NewClient(&redis.Options{Addr: addr, DisableIdentity: true})
				slots, err := rdb.ClusterSlots(context.Background()).Result()
				rdb.Close()
				if err != nil {
					return false
				}
				n := 0
				for _, s := range slots {
					if s.Nodes[0].Addr == h.Nodes[killed] {
						return false
					}
					n += s.End - s.Start + 1
				}
				if n != 16384 {
					return false
				}
			}
			return true
		},
	}
}

// clusterMasters are the names of the cluster's masters, sorted.
func clusterMasters(t *testing.T, h *testservers.RedisHA) []string {
	t.Helper()
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: h.ClusterAddrs, DisableIdentity: true})
	defer rdb.Close()
	slots, err := rdb.ClusterSlots(context.Background()).Result()
	if err != nil {
		t.Fatalf("CLUSTER SLOTS: %v", err)
	}
	seen := map[string]bool{}
	for _, s := range slots {
		if n := h.NodeOf(s.Nodes[0].Addr); n != "" {
			seen[n] = true
		}
	}
	var out []string
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func sentinelTopology(h *testservers.RedisHA) topology {
	masterAt := func(sentinel string) (string, error) {
		s := redis.NewSentinelClient(&redis.Options{Addr: sentinel, DisableIdentity: true})
		defer s.Close()
		a, err := s.GetMasterAddrByName(context.Background(), h.SentinelMaster).Result()
		if err != nil {
			return "", err
		}
		return a[0] + ":" + a[1], nil
	}
	masterAddr := func() (string, error) { return masterAt(h.SentinelAddrs[0]) }
	return topology{
		name: "sentinel", mode: redislimit.ModeSentinel, addrs: h.SentinelAddrs, masterName: h.SentinelMaster,
		master: func(t *testing.T) string {
			a, err := masterAddr()
			if err != nil {
				t.Fatalf("SENTINEL get-master-addr-by-name: %v", err)
			}
			return h.NodeOf(a)
		},
		// Failed over once every sentinel names the new master: a sentinel
		// still on the old configuration when the killed node comes back
		// (empty, no persistence) could take it for the master again and
		// have the node holding the counts resynchronise from it.
		failedOver: func(killed string) bool {
			a, err := masterAddr()
			if err != nil || a == h.Nodes[killed] {
				return false
			}
			for _, s := range h.SentinelAddrs[1:] {
				if b, err := masterAt(s); err != nil || b != a {
					return false
				}
			}
			rdb := redis.NewClient(&redis.Options{Addr: a, DisableIdentity: true})
			defer rdb.Close()
			role, err := rdb.Do(context.Background(), "ROLE").Slice()
			return err == nil && len(role) > 0 && role[0] == "master"
		},
	}
}

func TestRedisCluster(t *testing.T)  { holds(t, clusterTopology(needHA(t))) }
func TestRedisSentinel(t *testing.T) { holds(t, sentinelTopology(needHA(t))) }

// holds runs two gateways on topo and checks, through their TCP and HTTPS
// entry points, that the card limit, the duplicate window and the branch
// API's shared store hold across them; then kills topo's master under load:
// while it fails over every refusal is the documented fail-closed 91
// limiter_unavailable, service comes back, and no card is approved more
// often than its limit.
func holds(t *testing.T, topo topology) {
	sc := gateway.EmbeddedConfig().WithDefaults().IssuerSim
	pop := issuersim.Population{Seed: sc.Seed, BINs: sc.BINs, PerBIN: sc.PerBIN}
	sim, simAddr := gatewaytest.StartIssuer(t, issuersim.Config{Population: pop})
	certs := filepath.Join(t.TempDir(), "certs")
	var gws [2]*gateway.Gateway
	for i := range gws {
		gws[i] = gatewaytest.Start(t, func(c *gateway.Config) {
			gatewaytest.ExternalIssuer(simAddr)(c)
			c.Instance = fmt.Sprintf("%s-%c", topo.name, 'a'+i)
			c.Limits.Backend = "redis"
			c.Limits.Mode, c.Limits.Addrs, c.Limits.MasterName = topo.mode, topo.addrs, topo.masterName
			c.Limits.KeyPrefix = "pg-" + topo.name
			c.Limits.CardOpsPerDay = cardLimit
			// A count or claim is on the replica before the request
			// proceeds: what a failover promotes has it.
			c.Limits.ReplicaAcks = 1
			c.Limits.TerminalRPS, c.Limits.TerminalBurst = 1e5, 100000
			c.Limits.AcquirerRPS, c.Limits.AcquirerBurst = 1e5, 100000
			c.Branch.DevCertDir = certs // one development CA for both, as one deployment's
		})
	}
	ctx := context.Background()
	var clients [2]*loadgen.Client
	var links [2]*gatewaytest.AcquirerLink
	for i, g := range gws {
		gatewaytest.WaitSignedOn(t, g)
		c, err := loadgen.Dial(ctx, g.AcquirerAddr())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		clients[i], links[i] = c, gatewaytest.DialAcquirer(t, g.AcquirerAddr())
	}
	var terminal atomic.Int64
	unblock := func(card int) loadgen.Op {
		return loadgen.Op{Acquirer: gateway.DevBranchAcquirer, Terminal: fmt.Sprintf("HA%06d", terminal.Add(1)),
			Proc: iso8583.ProcPINUnblock, PAN: pop.Card(card).PAN, Teller: "TELLER-0117-07", IDRef: "IDCHK-2026-000123"}
	}
	do := func(c *loadgen.Client, op loadgen.Op) (string, error) {
		f, err := op.Fields()
		if err != nil {
			return "", err
		}
		dctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		ans, err := c.Do(dctx, f)
		if err != nil {
			return "", err
		}
		return ans.ResponseCode, nil
	}
	mustDo := func(t *testing.T, c *loadgen.Client, op loadgen.Op) string {
		t.Helper()
		code, err := do(c, op)
		if err != nil {
			t.Fatal(err)
		}
		return code
	}
	var stan atomic.Int64
	retransmitted := func(t *testing.T, card int) {
		t.Helper()
		f, err := unblock(card).Fields()
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now().UTC()
		f.STAN = fmt.Sprintf("9%05d", stan.Add(1))
		f.TransmissionTime, f.LocalTime, f.LocalDate = now.Format("0102150405"), now.Format("150405"), now.Format("0102")
		before := sim.Requests.Load()
		first := gatewaytest.Answer(t, links[0].Send(t, f))
		again := gatewaytest.Answer(t, links[1].Send(t, f))
		if first.ResponseCode != iso8583.RCApproved || again.ResponseCode != first.ResponseCode {
			t.Errorf("request answered %s, its retransmission to the other gateway %s: want 00 twice", first.ResponseCode, again.ResponseCode)
		}
		if n := sim.Requests.Load() - before; n != 1 {
			t.Errorf("the issuer got %d requests for a request and its retransmission, want 1", n)
		}
	}

	t.Run("card limit across gateways", func(t *testing.T) {
		for i := range cardLimit {
			if code := mustDo(t, clients[i%2], unblock(1)); code != iso8583.RCApproved {
				t.Fatalf("operation %d of %d answered %s, want 00", i+1, cardLimit, code)
			}
		}
		for i, c := range clients {
			if code := mustDo(t, c, unblock(1)); code != iso8583.RCExceedsFrequency {
				t.Errorf("gateway %d: operation past the shared limit answered %s, want 65", i, code)
			}
		}
	})
	t.Run("duplicate window across gateways", func(t *testing.T) { retransmitted(t, 2) })
	t.Run("branch store across gateways", func(t *testing.T) {
		var tellers [2]*http.Client
		var bases [2]string
		for i, g := range gws {
			rt, ok := g.Branch()
			if !ok || !rt.Shared {
				t.Fatalf("gateway %d: branch API without the Redis store", i)
			}
			tellers[i], bases[i] = branchClient(t, rt, "teller"), "https://"+rt.Addr
		}
		body, _ := json.Marshal(map[string]any{"pan": pop.Card(3).PAN, "branch": branchapi.DevBranch, "terminal": "BR0117T1",
			"teller": "T0117-07", "identity_check_ref": "IDCHK-2026-000301"})
		before := sim.Requests.Load()
		s1, b1 := branchPost(t, tellers[0], bases[0]+"/v1/pin/unblocks", body, "ha-"+topo.name)
		s2, b2 := branchPost(t, tellers[1], bases[1]+"/v1/pin/unblocks", body, "ha-"+topo.name)
		if s1 != http.StatusOK || s2 != s1 || !bytes.Equal(b1, b2) {
			t.Errorf("unblock = %d %s; its retry on the other gateway = %d %s; want 200 and the same answer", s1, b1, s2, b2)
		}
		if n := sim.Requests.Load() - before; n != 1 {
			t.Errorf("the issuer got %d requests for an unblock and its retry, want 1", n)
		}
	})

	t.Run("master killed under load", func(t *testing.T) {
		h := needHA(t)
		// 20 cards of limit 3 under a load of well over 60 operations: the
		// limit binds, before and after the failover.
		const cards, workers = 20, 4
		first := 100 // cards 100–119: untouched so far
		var (
			mu        sync.Mutex
			approvals = map[int]int{}
			codes     = map[string]int{}
			answered  atomic.Int64
			next      atomic.Int64
			stop      = make(chan struct{})
			wg        sync.WaitGroup
		)
		for w := range workers {
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					card := first + int(next.Add(1))%cards
					code, err := do(clients[w%2], unblock(card))
					if err != nil {
						t.Errorf("worker %d: %v", w, err)
						return
					}
					mu.Lock()
					codes[code]++
					if code == iso8583.RCApproved {
						approvals[card]++
					}
					mu.Unlock()
					answered.Add(1)
				}
			})
		}
		waitFor := func(what string, d time.Duration, ok func() bool) {
			t.Helper()
			deadline := time.Now().Add(d)
			for !ok() {
				if time.Now().After(deadline) {
					close(stop)
					wg.Wait()
					t.Fatalf("%s: not within %v\n%s", what, d, h.Status())
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
		waitFor("load running", 30*time.Second, func() bool { return answered.Load() >= 40 })
		killed := topo.master(t)
		t.Logf("killing %s (%s) after %d answers", killed, h.Nodes[killed], answered.Load())
		if err := h.Kill(killed); err != nil {
			t.Fatal(err)
		}
		killedAt := time.Now()
		waitFor("failover", 30*time.Second, func() bool { return topo.failedOver(killed) })
		t.Logf("failed over %.1fs after the kill", time.Since(killedAt).Seconds())
		// Its supervisor restarts the killed node, which comes back empty as
		// the replica of the one that took over: until it has synchronised,
		// the new master has no replica to acknowledge (replica_acks 1), and
		// its cards are refused 91.
		if err := h.StartNode(killed); err != nil {
			t.Fatalf("restart %s: %v", killed, err)
		}
		// Service again, on both gateways, for cards the load does not use;
		// the gateways' clients may take a moment to find the new master.
		for i, c := range clients {
			card := 400 + i
			var last string
			waitFor(fmt.Sprintf("gateway %d serving again", i), 30*time.Second, func() bool {
				code, err := do(c, unblock(card))
				if last != fmt.Sprint(code, err) {
					last = fmt.Sprint(code, err)
					t.Logf("gateway %d at %.1fs: %s", i, time.Since(killedAt).Seconds(), last)
				}
				return err == nil && code == iso8583.RCApproved
			})
		}
		t.Logf("serving again %.1fs after the kill", time.Since(killedAt).Seconds())
		after := answered.Load()
		waitFor("load after the failover", 30*time.Second, func() bool { return answered.Load() >= after+40 })
		close(stop)
		wg.Wait()
		retransmitted(t, 410) // the load has stopped: the issuer's counter is this test's

		mu.Lock()
		defer mu.Unlock()
		t.Logf("answers under load: %v", codes)
		for code := range codes {
			switch code {
			case iso8583.RCApproved, iso8583.RCExceedsFrequency, iso8583.RCIssuerUnavailable:
			default:
				t.Errorf("%d answers %s under load, want only 00, 65 and 91 (fail closed)", codes[code], code)
			}
		}
		if codes[iso8583.RCExceedsFrequency] == 0 {
			t.Errorf("no answer 65 under load: the cards never reached their limit, so the count below proves nothing")
		}
		for card, n := range approvals {
			if n > cardLimit {
				t.Errorf("card %d approved %d times, over its limit of %d", card, n, cardLimit)
			}
		}
		// Every 91 is the limiter failing closed, recorded with its reason.
		for i, g := range gws {
			entries, err := g.Journal().Entries(1, 100000)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range entries {
				ev, err := events.Decode(e.Message)
				if err != nil {
					t.Fatal(err)
				}
				if ev.Code == iso8583.RCIssuerUnavailable && ev.Reason != "limiter_unavailable" {
					t.Errorf("gateway %d: event %s answered 91 with reason %s, want limiter_unavailable", i, ev.ID, ev.Reason)
				}
			}
		}
	})
}

// branchClient is a branch API client with the development certificate of
// who (teller, supervisor).
func branchClient(t *testing.T, rt gateway.BranchInfo, who string) *http.Client {
	t.Helper()
	ca, err := os.ReadFile(filepath.Join(rt.CertDir, branchapi.DevCAFile))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		t.Fatal("development CA does not parse")
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(rt.CertDir, who+".pem"), filepath.Join(rt.CertDir, who+"-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Timeout: 20 * time.Second, Transport: tr}
}

func branchPost(t *testing.T, c *http.Client, url string, body []byte, key string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", key)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}
