package issuersim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"pingate/iso8583"
	"pingate/routing"
)

// These tests run routing's issuer links against the simulator over real TCP.

func startTestSim(t *testing.T, pop Population) (*Sim, string) {
	t.Helper()
	zpk, pvk, err := DevelopmentKeys()
	if err != nil {
		t.Fatal(err)
	}
	sim, err := New(Config{Population: pop, ZPK: zpk, PVK: pvk, Server: iso8583.Config{MaxInFlightPerConn: 4096}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = sim.Server().Serve(context.Background(), ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = sim.Server().Shutdown(ctx)
		<-done
	})
	return sim, ln.Addr().String()
}

func dial(ctx context.Context, addr, framing string, onFrame func([]byte)) (routing.FrameConn, error) {
	fr, err := iso8583.ParseFraming(framing)
	if err != nil {
		return nil, err
	}
	return iso8583.Dial(ctx, addr, iso8583.ClientConfig{Framing: fr, OnFrame: onFrame})
}

func startLinks(t *testing.T, ic routing.IssuerConfig) *routing.IssuerLinks {
	t.Helper()
	cfg := routing.Config{Institution: "999001", Issuers: []routing.IssuerConfig{ic}}.WithDefaults()
	l := routing.NewIssuerLinks(routing.LinksConfig{
		Institution: "999001", Issuers: cfg.Issuers, Codec: routing.IssuerDialect{}, Dial: dial,
		Reversals: routing.NewMemoryReversalStore(),
	})
	l.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = l.Shutdown(ctx)
	})
	deadline := time.Now().Add(5 * time.Second)
	for !l.SignedOn()[ic.ID] {
		if time.Now().After(deadline) {
			t.Fatal("link did not sign on")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return l
}

// TestLinksMatchThousandsInFlight: 2000 concurrent unblocks on one link, half
// for cards the issuer knows (00) and half for cards it does not (14). A
// mismatched answer would hand a request the other half's code.
func TestLinksMatchThousandsInFlight(t *testing.T) {
	pop := Population{Seed: 3, BINs: []string{"62284812"}, PerBIN: 5000}
	sim, addr := startTestSim(t, pop)
	// A long timeout: this test is about matching, not speed, on a shared machine.
	l := startLinks(t, routing.IssuerConfig{ID: "ssbank", Institution: "300001", Hosts: []string{addr}, PINFormat: 4, Key: "k", Timeout: time.Minute})
	const n = 2000
	var wg sync.WaitGroup
	errs := make(chan string, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			pan, want := pop.Card(i%900).PAN, "00" // below 998: no special cards
			if i%2 == 1 {
				pan, want = fmt.Sprintf("622848129%06d", i), "14" // not a card of the population
				pan += "0"
			}
			code, err := l.Send(context.Background(), "ssbank", &routing.IssuerRequest{
				Operation: routing.OpUnblock, PAN: pan, Terminal: fmt.Sprintf("T%07d", i), Teller: "T1", IdentityRef: "ID1",
				RRN: "000000000001", Merchant: "TEST MERCHANT  ",
			})
			if err != nil || code != want {
				errs <- fmt.Sprintf("request %d: code %s, err %v, want %s", i, code, err, want)
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if got := sim.Requests.Load(); got != n {
		t.Errorf("issuer saw %d requests, want %d", got, n)
	}
}

// TestLinksFailOverAndEcho: the first host is down, so requests go to the
// second; an idle link sends echo tests.
func TestLinksFailOverAndEcho(t *testing.T) {
	pop := Population{Seed: 3, BINs: []string{"62284812"}, PerBIN: 10}
	sim, addr := startTestSim(t, pop)
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close()
	l := startLinks(t, routing.IssuerConfig{ID: "ssbank", Institution: "300001", Hosts: []string{deadAddr, addr},
		PINFormat: 4, Key: "k", EchoInterval: 50 * time.Millisecond})
	code, err := l.Send(context.Background(), "ssbank", &routing.IssuerRequest{
		Operation: routing.OpUnblock, PAN: pop.Card(1).PAN, Terminal: "T0000001", Teller: "T1", IdentityRef: "ID1",
		RRN: "000000000001", Merchant: "TEST MERCHANT  "})
	if err != nil || code != "00" {
		t.Fatalf("Send via the second host = %s, %v; want 00", code, err)
	}
	signOn := sim.Network.Load()
	time.Sleep(400 * time.Millisecond)
	if sim.Network.Load() <= signOn {
		t.Fatalf("no echo test on an idle link (network messages %d before, %d after)", signOn, sim.Network.Load())
	}
}

// brokenStore refuses every write, as a reversal store on a failed disk.
type brokenStore struct{ *routing.MemoryReversalStore }

func (brokenStore) Put(context.Context, routing.Reversal) error { return fmt.Errorf("disk failed") }

// TestLinksOweTheReversalBeforeTheIssuer: an unblock is sent only once its
// reversal is owed ahead in the store; while the request is in flight the
// advice is held (not sent); a decline and a discharge delete it; a store
// that cannot take the advice fails the request with ErrReversalStore and
// the issuer never sees it.
func TestLinksOweTheReversalBeforeTheIssuer(t *testing.T) {
	pop := Population{Seed: 3, BINs: []string{"62284812"}, PerBIN: 10}
	sim, addr := startTestSim(t, pop)
	ic := routing.IssuerConfig{ID: "ssbank", Institution: "300001", Hosts: []string{addr}, PINFormat: 4, Key: "k"}
	cfg := routing.Config{Institution: "999001", Issuers: []routing.IssuerConfig{ic}}.WithDefaults()
	store := routing.NewMemoryReversalStore()
	for _, tt := range []struct {
		name  string
		store routing.ReversalStore
	}{{"working store", store}, {"broken store", brokenStore{routing.NewMemoryReversalStore()}}} {
		l := routing.NewIssuerLinks(routing.LinksConfig{Institution: "999001", Issuers: cfg.Issuers, Codec: routing.IssuerDialect{}, Dial: dial, Reversals: tt.store})
		l.Start()
		deadline := time.Now().Add(5 * time.Second)
		for !l.SignedOn()["ssbank"] {
			if time.Now().After(deadline) {
				t.Fatal("link did not sign on")
			}
			time.Sleep(10 * time.Millisecond)
		}
		before := sim.Requests.Load()
		req := &routing.IssuerRequest{Operation: routing.OpUnblock, PAN: pop.Card(1).PAN, Terminal: "T0000001", Teller: "T1", IdentityRef: "ID1", RRN: "000000000001", Merchant: "TEST MERCHANT  "}
		code, err := l.Send(context.Background(), "ssbank", req)
		switch tt.name {
		case "working store":
			if err != nil || code != "00" {
				t.Fatalf("%s: Send = %s, %v; want 00", tt.name, code, err)
			}
			if p, _ := store.Pending(context.Background()); len(p) != 1 || !p[0].Record {
				t.Fatalf("%s: after an approval the store holds %+v, want the advice owed ahead", tt.name, p)
			}
			l.Discharge(context.Background(), req)
			if p, _ := store.Pending(context.Background()); len(p) != 0 {
				t.Fatalf("%s: after Discharge the store holds %d advices, want 0", tt.name, len(p))
			}
			declined := &routing.IssuerRequest{Operation: routing.OpUnblock, PAN: "6228481299999999", Terminal: "T0000002", Teller: "T1", IdentityRef: "ID1", RRN: "000000000001", Merchant: "TEST MERCHANT  "}
			if code, err := l.Send(context.Background(), "ssbank", declined); err != nil || code == "00" {
				t.Fatalf("%s: Send for an unknown card = %s, %v; want a decline", tt.name, code, err)
			}
			if p, _ := store.Pending(context.Background()); len(p) != 0 {
				t.Fatalf("%s: after a decline the store holds %d advices, want 0", tt.name, len(p))
			}
			if sim.Reversals.Load() != 0 {
				t.Fatalf("%s: issuer got %d reversals, want none", tt.name, sim.Reversals.Load())
			}
		case "broken store":
			if !errors.Is(err, routing.ErrReversalStore) {
				t.Fatalf("%s: Send = %s, %v; want ErrReversalStore", tt.name, code, err)
			}
			if n := sim.Requests.Load() - before; n != 0 {
				t.Fatalf("%s: issuer got %d requests, want none", tt.name, n)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = l.Shutdown(ctx)
		cancel()
	}
}
