package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"

	"pingate/cmd/internal/cli"
	"pingate/integration/events"
	"pingate/integration/gateway"
	"pingate/integration/outbox"
	"pingate/routing"
)

// eventsCmd is "pingate events".
type eventsCmd struct {
	Tail tailOptions `cmd:"" help:"print outcome events from a journal, a running gateway or the Kafka topic"`
}

// tailOptions are the flags of "events tail".
type tailOptions struct {
	Journal   string `name:"journal" placeholder:"DIR" help:"journal directory of a stopped gateway"`
	Admin     string `name:"admin" placeholder:"HOST:PORT" help:"admin address of a running gateway (its journal's newest events)"`
	Brokers   string `name:"kafka" placeholder:"BROKERS" help:"bootstrap brokers, host:port[,host:port]"`
	Topic     string `name:"topic" help:"topic to read (with --kafka)"`
	JSON      bool   `name:"json" help:"print JSON lines instead of text"`
	Follow    bool   `name:"follow" help:"keep printing new events (--kafka only)"`
	FromStart bool   `name:"from-beginning" help:"print the oldest events instead of the newest"`
	N         int    `name:"n" short:"n" default:"10" help:"number of events to print first (0: all)"`
}

func (*tailOptions) Help() string {
	return cli.Example(
		"pingate events tail --journal /var/lib/pingate/journal -n 20",
		"pingate events tail --admin 127.0.0.1:9090 --json",
		"pingate events tail --kafka 127.0.0.1:9092 --topic pingate.outcomes --follow")
}

// Run prints outcome events, one per line: from a stopped gateway's journal
// (--journal), from a running gateway's journal through its admin listener
// (--admin), or from the Kafka topic (--kafka, --topic). Without
// --from-beginning it prints the newest N (for Kafka, the newest N across
// partitions by ce_time); with it, the oldest N. --follow (Kafka only) then
// keeps printing new events until interrupted.
func (o *tailOptions) Run(env *cli.Env) error {
	return runEventsTail(env.Ctx, *o, env.Stdout)
}

func runEventsTail(ctx context.Context, o tailOptions, stdout io.Writer) error {
	switch {
	case countSet(o.Journal, o.Brokers, o.Admin) != 1:
		return fmt.Errorf("%w: give exactly one of --journal, --kafka or --admin", errUsage)
	case o.Admin != "" && (o.Topic != "" || o.Follow || o.FromStart || o.N < 1 || o.N > gateway.MaxAdminEvents):
		return fmt.Errorf("%w: --admin prints the newest 1 to %d events (-n), without --topic, --follow or --from-beginning", errUsage, gateway.MaxAdminEvents)
	case o.Brokers != "" && o.Topic == "":
		return fmt.Errorf("%w: --kafka needs --topic", errUsage)
	case o.Journal != "" && (o.Topic != "" || o.Follow):
		return fmt.Errorf("%w: --topic and --follow need --kafka (a running gateway locks its journal)", errUsage)
	case o.N < 0:
		return fmt.Errorf("%w: -n must be >= 0", errUsage)
	}
	p := &eventPrinter{w: stdout, json: o.JSON}
	switch {
	case o.Journal != "":
		return tailJournal(o, p)
	case o.Admin != "":
		return tailAdmin(ctx, o, p)
	}
	return tailKafka(ctx, o, p)
}

func countSet(vs ...string) int {
	n := 0
	for _, v := range vs {
		if v != "" {
			n++
		}
	}
	return n
}

// tailAdmin prints the newest events of a running gateway's journal, read
// from its admin listener (GET /admin/events).
func tailAdmin(ctx context.Context, o tailOptions, p *eventPrinter) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://%s/admin/events?n=%d", o.Admin, o.N), nil)
	if err != nil {
		return fmt.Errorf("%w: --admin %q is not a host:port", errUsage, o.Admin)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("admin listener: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("admin listener: GET /admin/events: %s", resp.Status)
	}
	var lines []gateway.EventLine
	if err := json.NewDecoder(resp.Body).Decode(&lines); err != nil {
		return fmt.Errorf("admin listener: GET /admin/events: %w", err)
	}
	for _, l := range lines {
		ev := l.Event
		ev.Reverses = l.Reverses
		if err := p.print(ev); err != nil {
			return err
		}
	}
	return nil
}

// eventPrinter writes one line per event; safe for concurrent use.
type eventPrinter struct {
	mu   sync.Mutex
	w    io.Writer
	json bool
}

// print writes ev as a text line "time type code masked-PAN outcome ids" or
// as a JSON object; an acquirer's reversal also names the event it reverses.
func (p *eventPrinter) print(ev routing.Event) error {
	var line string
	if p.json {
		b, err := json.Marshal(gateway.EventLine{Event: ev, Reverses: ev.Reverses})
		if err != nil {
			return err
		}
		line = string(b)
	} else {
		pan := ev.MaskedPAN
		if pan == "" {
			pan = "-"
		}
		line = fmt.Sprintf("%s %s %s %s %s id=%s card=%s", ev.Time.UTC().Format(time.RFC3339Nano),
			ev.Type, ev.Code, pan, ev.Outcome, ev.ID, orDash(ev.CardToken))
		if ev.TraceID != "" {
			line += " trace=" + ev.TraceID
		}
		if ev.Reverses != "" {
			line += " reverses=" + ev.Reverses
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	_, err := fmt.Fprintln(p.w, line)
	return err
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func tailJournal(o tailOptions, p *eventPrinter) error {
	r, err := outbox.OpenReader(o.Journal)
	if err != nil {
		return err
	}
	defer r.Close()
	var es []outbox.Entry
	if o.FromStart {
		es, err = r.First(o.N)
	} else {
		es, err = r.Last(o.N)
	}
	if err != nil {
		return err
	}
	evs, err := gateway.DecodeEntries(es)
	if err != nil {
		return err
	}
	for _, ev := range evs {
		if err := p.print(ev); err != nil {
			return err
		}
	}
	return nil
}

// partitionRange is the offsets of one partition to read first.
type partitionRange struct {
	id          int
	start, stop int64 // read [start, stop); stop is the high watermark
}

func tailKafka(ctx context.Context, o tailOptions, p *eventPrinter) error {
	brokers := strings.Split(o.Brokers, ",")
	dialer := &kafka.Dialer{Timeout: 10 * time.Second}
	conn, err := dialer.DialContext(ctx, "tcp", brokers[0])
	if err != nil {
		return fmt.Errorf("connect to kafka: %w", err)
	}
	parts, err := conn.ReadPartitions(o.Topic)
	conn.Close()
	if err != nil {
		return fmt.Errorf("read partitions of %s: %w", o.Topic, err)
	}
	var ranges []partitionRange
	for _, pt := range parts {
		lc, err := dialer.DialLeader(ctx, "tcp", brokers[0], o.Topic, pt.ID)
		if err != nil {
			return fmt.Errorf("connect to leader of partition %d: %w", pt.ID, err)
		}
		first, last, err := lc.ReadOffsets()
		lc.Close()
		if err != nil {
			return fmt.Errorf("read offsets of partition %d: %w", pt.ID, err)
		}
		r := partitionRange{id: pt.ID, start: first, stop: last}
		if o.N > 0 {
			if o.FromStart {
				r.stop = min(last, first+int64(o.N))
			} else {
				r.start = max(first, last-int64(o.N))
			}
		}
		ranges = append(ranges, r)
	}
	sort.Slice(ranges, func(a, b int) bool { return ranges[a].id < ranges[b].id })

	// The first events: read each partition's range, merge by time, cut to N.
	var evs []routing.Event
	for _, r := range ranges {
		got, err := readRange(ctx, brokers, o.Topic, r)
		if err != nil {
			return err
		}
		evs = append(evs, got...)
	}
	sort.SliceStable(evs, func(a, b int) bool { return evs[a].Time.Before(evs[b].Time) })
	if o.N > 0 && len(evs) > o.N {
		if o.FromStart {
			evs = evs[:o.N]
		} else {
			evs = evs[len(evs)-o.N:]
		}
	}
	for _, ev := range evs {
		if err := p.print(ev); err != nil {
			return err
		}
	}
	if !o.Follow {
		return nil
	}
	return follow(ctx, brokers, o.Topic, ranges, p)
}

func newPartitionReader(brokers []string, topic string, partition int) *kafka.Reader {
	return kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: topic, Partition: partition,
		MinBytes: 1, MaxBytes: 10 << 20, MaxWait: 250 * time.Millisecond})
}

// readRange reads the records of one partition in [r.start, r.stop).
func readRange(ctx context.Context, brokers []string, topic string, r partitionRange) ([]routing.Event, error) {
	if r.start >= r.stop {
		return nil, nil
	}
	rd := newPartitionReader(brokers, topic, r.id)
	defer rd.Close()
	if err := rd.SetOffset(r.start); err != nil {
		return nil, err
	}
	var out []routing.Event
	for {
		m, err := rd.ReadMessage(ctx)
		if err != nil {
			return nil, fmt.Errorf("read partition %d: %w", r.id, err)
		}
		ev, err := decodeRecord(m)
		if err != nil {
			return nil, err
		}
		out = append(out, ev)
		if m.Offset >= r.stop-1 {
			return out, nil
		}
	}
}

func decodeRecord(m kafka.Message) (routing.Event, error) {
	em := events.Message{Key: m.Key, Value: m.Value}
	for _, h := range m.Headers {
		em.Headers = append(em.Headers, events.Header{Key: h.Key, Value: h.Value})
	}
	ev, err := events.Decode(em)
	if err != nil {
		return ev, fmt.Errorf("partition %d offset %d: %w", m.Partition, m.Offset, err)
	}
	return ev, nil
}

// follow prints records past each partition's high watermark as they arrive,
// one reader per partition, until ctx ends (then it returns nil).
func follow(ctx context.Context, brokers []string, topic string, ranges []partitionRange, p *eventPrinter) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, len(ranges))
	for _, r := range ranges {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rd := newPartitionReader(brokers, topic, r.id)
			defer rd.Close()
			if err := rd.SetOffset(r.stop); err != nil {
				errc <- err
				return
			}
			for {
				m, err := rd.ReadMessage(ctx)
				if err != nil {
					if ctx.Err() == nil {
						errc <- fmt.Errorf("read partition %d: %w", r.id, err)
					}
					return
				}
				ev, err := decodeRecord(m)
				if err == nil {
					err = p.print(ev)
				}
				if err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	cancel()
	wg.Wait()
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}
