package loadgen

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	moov "github.com/moov-io/iso8583"

	"pingate/iso8583"
	"pingate/pinblock"
	"pingate/pinblock/devkeys"
)

// The baseline is what a PIN change round trip costs with nothing but
// moov-io/iso8583 and TCP: a client packs the same 0100 the load tool sends
// (acquirer dialect, same fields and sizes), writes it with the same 2-byte
// length framing, and an echo server unpacks it, answers 0110 with code 00
// and no PIN blocks (as the gateway answers), and packs that. No routing, no
// security module, no issuer, no limits, no journal. It uses moov directly
// (moov.NewMessage, Marshal, Pack, Unpack, Unmarshal), not pingate's iso8583
// helpers, so that it measures the library and the network alone.
//
// ServeEcho is the echo server; RunBaseline the client, which takes the load
// tool's Params (concurrency, rate, duration, warm-up, request count) and
// reports in the same form.

// readFrame2 reads one 2-byte big-endian length-framed message into buf
// (grown as needed) and returns it.
func readFrame2(r *bufio.Reader, buf []byte) ([]byte, error) {
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint16(h[:]))
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	_, err := io.ReadFull(r, buf)
	return buf, err
}

// ServeEcho answers every 0100 on every connection of ln until ctx ends:
// unpack, answer 0110/00 without PIN blocks, pack, write. Each connection is
// served by one goroutine, frames in order.
func ServeEcho(ctx context.Context, ln net.Listener) error {
	return serveEach(ctx, ln, echoConn)
}

// serveEach accepts connections on ln until ctx ends and runs serve on each
// in a goroutine of its own; when ctx ends it closes ln and every connection
// still open, and returns once every serve has returned. serve need not close
// its connection.
func serveEach(ctx context.Context, ln net.Listener, serve func(net.Conn)) error {
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	go func() {
		<-ctx.Done()
		_ = ln.Close()
		mu.Lock()
		for c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
	}()
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		mu.Lock()
		conns[c] = true
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
				_ = c.Close()
			}()
			serve(c)
		}()
	}
}

// echoConn answers each 0100 on c with its 0110.
func echoConn(c net.Conn) {
	reframe(c, c, func(f *iso8583.Fields) {
		f.MTI, f.ResponseCode = iso8583.MTIAuthResponse, iso8583.RCApproved
		f.PINBlock, f.NewPINBlock, f.SecurityControl, f.Additional = nil, nil, "", nil
	})
}

// reframe reads frames from src until it fails, and writes each to dst
// unpacked and packed again with moov (the acquirer spec): moov.NewMessage,
// Unpack, Unmarshal into iso8583.Fields, edit (when not nil), then a new
// message's Marshal and Pack, one write per frame.
func reframe(src, dst net.Conn, edit func(*iso8583.Fields)) {
	r := bufio.NewReaderSize(src, 4096)
	var buf, out []byte
	for {
		frame, err := readFrame2(r, buf)
		if err != nil {
			return
		}
		buf = frame[:0]
		in := moov.NewMessage(iso8583.AcquirerSpec)
		if err := in.Unpack(frame); err != nil {
			return
		}
		var f iso8583.Fields
		if err := in.Unmarshal(&f); err != nil {
			return
		}
		if edit != nil {
			edit(&f)
		}
		next := moov.NewMessage(iso8583.AcquirerSpec)
		if err := next.Marshal(&f); err != nil {
			return
		}
		b, err := next.Pack()
		if err != nil {
			return
		}
		out = binary.BigEndian.AppendUint16(out[:0], uint16(len(b)))
		out = append(out, b...)
		if _, err := dst.Write(out); err != nil {
			return
		}
	}
}

// baselineConn is one client connection: requests are matched to answers
// by STAN.
type baselineConn struct {
	nc      net.Conn
	wmu     sync.Mutex
	stan    atomic.Uint32
	pending sync.Map // STAN → chan struct{}
	done    chan struct{}
}

func (c *baselineConn) readLoop() {
	defer close(c.done)
	r := bufio.NewReaderSize(c.nc, 4096)
	var buf []byte
	for {
		frame, err := readFrame2(r, buf)
		if err != nil {
			return
		}
		buf = frame[:0]
		m := moov.NewMessage(iso8583.AcquirerSpec)
		if err := m.Unpack(frame); err != nil {
			return
		}
		var f iso8583.Fields
		if err := m.Unmarshal(&f); err != nil {
			return
		}
		if ch, ok := c.pending.LoadAndDelete(f.STAN); ok {
			ch.(chan struct{}) <- struct{}{}
		}
	}
}

// do sends tmpl with a fresh STAN and waits for its answer.
func (c *baselineConn) do(ctx context.Context, tmpl iso8583.Fields) error {
	f := tmpl
	f.STAN = fmt.Sprintf("%06d", c.stan.Add(1)%999999+1)
	now := time.Now().UTC()
	f.TransmissionTime = now.Format("0102150405")
	f.LocalTime, f.LocalDate = now.Format("150405"), now.Format("0102")
	m := moov.NewMessage(iso8583.AcquirerSpec)
	if err := m.Marshal(&f); err != nil {
		return err
	}
	b, err := m.Pack()
	if err != nil {
		return err
	}
	ch := make(chan struct{}, 1)
	c.pending.Store(f.STAN, ch)
	frame := binary.BigEndian.AppendUint16(make([]byte, 0, len(b)+2), uint16(len(b)))
	frame = append(frame, b...)
	c.wmu.Lock()
	_, err = c.nc.Write(frame)
	c.wmu.Unlock()
	if err != nil {
		c.pending.Delete(f.STAN)
		return ErrNoAnswer
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		c.pending.Delete(f.STAN)
		return ctx.Err()
	case <-c.done:
		return ErrNoAnswer
	}
}

// baselineRequest is the load tool's PIN change request, with fixed PIN blocks.
func baselineRequest() (iso8583.Fields, error) {
	o := Op{Acquirer: ATMAcquirer, Terminal: "LT000001", Proc: iso8583.ProcPINChange, PAN: "6228481200000017",
		OldPIN: "4826", NewPIN: "5931", Format: pinblock.Format0}
	key, err := devkeys.Key(devkeys.ATMZPK)
	if err != nil {
		return iso8583.Fields{}, err
	}
	defer key.Zeroize()
	f, err := loadFields(o, key)
	if err != nil {
		return iso8583.Fields{}, err
	}
	return *f, nil
}

// RunBaseline drives cfg.Target like Run drives a gateway.
func RunBaseline(ctx context.Context, cfg Params, progress io.Writer) (*Report, error) {
	tmpl, err := baselineRequest()
	if err != nil {
		return nil, err
	}
	var conns []*baselineConn
	defer func() {
		for _, c := range conns {
			_ = c.nc.Close()
			<-c.done
		}
	}()
	for range cfg.Conns {
		d := net.Dialer{Timeout: 5 * time.Second}
		nc, err := d.DialContext(ctx, "tcp", cfg.Target)
		if err != nil {
			return nil, fmt.Errorf("connect to %s: %w", cfg.Target, err)
		}
		c := &baselineConn{nc: nc, done: make(chan struct{})}
		go c.readLoop()
		conns = append(conns, c)
	}
	workers := cfg.Conns * cfg.InFlight
	stats := make([]*workerStats, workers)
	for i := range stats {
		stats[i] = &workerStats{codes: map[string]int64{}, errs: map[string]int64{}}
	}
	var (
		measuring atomic.Bool
		total     atomic.Int64
		stop      = make(chan struct{})
		stopOnce  sync.Once
		halt      = func() { stopOnce.Do(func() { close(stop) }) }
		slots     chan time.Time
		missed    atomic.Int64
		wg, pwg   sync.WaitGroup
	)
	if cfg.Rate > 0 {
		slots = make(chan time.Time, workers)
		lr := &loadRun{cfg: cfg, stop: stop}
		lr.measuring.Store(true)
		pwg.Add(1)
		go func() {
			defer pwg.Done()
			defer close(slots)
			lr.pace(ctx, slots, &missed)
		}()
	}
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, st := conns[i%cfg.Conns], stats[i]
			for {
				var begin time.Time
				if slots != nil {
					t, ok := <-slots
					if !ok {
						return
					}
					begin = t
				} else {
					select {
					case <-stop:
						return
					default:
					}
					begin = time.Now()
				}
				m := measuring.Load()
				rctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
				err := c.do(rctx, tmpl)
				cancel()
				if !m {
					continue
				}
				kind := ""
				switch {
				case err == nil:
				case errors.Is(err, context.DeadlineExceeded):
					kind = errKindTimeout
				default:
					kind = errKindConn
				}
				st.record(opChange, time.Since(begin), iso8583.RCApproved, kind)
				if n := total.Add(1); cfg.MaxRequests > 0 && n >= cfg.MaxRequests {
					halt()
				}
				if kind == errKindConn {
					select {
					case <-stop:
						return
					case <-time.After(100 * time.Millisecond):
					}
				}
			}
		}()
	}
	if cfg.Warmup > 0 {
		select {
		case <-time.After(cfg.Warmup):
		case <-ctx.Done():
		}
	}
	missed.Store(0)
	measuring.Store(true)
	cpu := startCPUWatch("client", cfg.CPU)
	start := time.Now()
	var deadline <-chan time.Time
	if cfg.Duration > 0 {
		t := time.NewTimer(cfg.Duration)
		defer t.Stop()
		deadline = t.C
	}
	var tick <-chan time.Time
	if progress != nil {
		t := time.NewTicker(cfg.Progress)
		defer t.Stop()
		tick = t.C
	}
loop:
	for {
		select {
		case <-deadline:
			break loop
		case <-ctx.Done():
			break loop
		case <-stop:
			break loop
		case now := <-tick:
			n := total.Load()
			fmt.Fprintf(progress, "baseline: %5.1fs  %8d requests  %8.1f/s\n", now.Sub(start).Seconds(), n, float64(n)/now.Sub(start).Seconds())
		}
	}
	elapsed := time.Since(start)
	halt()
	pwg.Wait()
	wg.Wait()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	lr := &loadRun{stats: stats}
	s := lr.merge()
	rep := &Report{Mix: "echo 0100→0110", ByOperation: map[string]int64{"change": s.ops[opChange]}}
	answered := s.count - s.errCnt // before finish counts the missed slots as errors
	rep.finish(cfg, s, missed.Load(), elapsed)
	rep.CPU = cpu.finish(answered)
	return rep, nil
}
