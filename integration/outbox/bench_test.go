package outbox

import (
	"context"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble"
)

// BenchmarkJournalAppend measures Publish from many goroutines: each call
// returns after its entry is fsynced, batched with concurrent ones into one
// commit. Compare with the baselines below: one pebble Set with Sync per
// event, and a raw file write + fsync per event. Read ns/op as the cost per
// event at that concurrency; entries/fsync shows the grouping achieved. Each
// concurrency runs twice: with fsyncs as soon as the last one returns
// (interval=off, pebble's default, as the baselines run) and with the
// gateway's default Config.SyncInterval between them (interval=1ms).
func BenchmarkJournalAppend(b *testing.B) {
	for _, par := range []int{1, 16, 64} {
		for _, iv := range []struct {
			name string
			d    time.Duration
		}{{"off", -1}, {"1ms", DefaultSyncInterval}} {
			b.Run(parName(par)+"/interval="+iv.name, func(b *testing.B) {
				j := mustOpen(b, Config{Dir: b.TempDir(), Source: "/pingate/bench", SyncInterval: iv.d})
				ev := testEvent(1)
				if err := j.Publish(context.Background(), ev); err != nil { // correctness once
					b.Fatal(err)
				}
				b.ReportAllocs()
				b.SetParallelism(par)
				before := j.Stats()
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if err := j.Publish(context.Background(), ev); err != nil {
							b.Error(err)
							return
						}
					}
				})
				b.StopTimer()
				s := j.Stats()
				b.ReportMetric(float64(s.Appends-before.Appends)/float64(s.Syncs-before.Syncs), "entries/fsync")
				shutdown(b, j)
			})
		}
	}
}

// BenchmarkBaselinePebbleSetSync is one pebble Set with Sync per event, the
// same value size, from the same number of goroutines (pebble's own commit
// pipeline may group concurrent syncs).
func BenchmarkBaselinePebbleSetSync(b *testing.B) {
	value := recordValue(b)
	for _, par := range []int{1, 16, 64} {
		b.Run(parName(par), func(b *testing.B) {
			db, err := pebble.Open(b.TempDir(), &pebble.Options{Logger: quietLogger{}})
			if err != nil {
				b.Fatal(err)
			}
			var seq atomic.Uint64
			b.ReportAllocs()
			b.SetBytes(int64(len(value)))
			b.SetParallelism(par)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := db.Set(entryKey(seq.Add(1)), value, pebble.Sync); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			db.Close()
		})
	}
}

// BenchmarkBaselineFileFsync is a raw os.File write + fsync per event, from
// one goroutine: the floor of any durable per-event append on this disk.
func BenchmarkBaselineFileFsync(b *testing.B) {
	value := recordValue(b)
	f, err := os.Create(filepath.Join(b.TempDir(), "raw.log"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	b.ReportAllocs()
	b.SetBytes(int64(len(value)))
	b.ResetTimer()
	for range b.N {
		if _, err := f.Write(value); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
	}
}

func recordValue(b *testing.B) []byte {
	j := mustOpen(b, Config{Dir: b.TempDir(), Source: "/pingate/bench"})
	defer shutdown(b, j)
	if err := j.Publish(context.Background(), testEvent(1)); err != nil {
		b.Fatal(err)
	}
	var v []byte
	err := j.read(func(db *pebble.DB) error {
		val, c, err := db.Get(entryKey(1))
		if err != nil {
			return err
		}
		defer c.Close()
		v = append([]byte(nil), val...)
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return v
}

func parName(p int) string {
	return "goroutines=" + map[int]string{1: "GOMAXPROCS", 16: "16xGOMAXPROCS", 64: "64xGOMAXPROCS"}[p]
}
