package reversalstore

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/vfs"
	"github.com/cockroachdb/pebble/vfs/errorfs"

	"pingate/routing"
)

// faults fails (or, with block, holds until heal) every write-kind file
// operation once armed.
type faults struct {
	armed, block atomic.Bool
	err          error
	release      chan struct{}
}

func (f *faults) MaybeError(op errorfs.Op, _ string) error {
	if !f.armed.Load() || op.OpKind() != errorfs.OpKindWrite {
		return nil
	}
	if f.block.Load() {
		<-f.release
		return nil
	}
	return f.err
}

// TestStoreWriteErrorFailsWithoutPanic: a failing disk (ENOSPC, EIO) makes
// Put and Delete return errors, never panic, and Health report it.
func TestStoreWriteErrorFailsWithoutPanic(t *testing.T) {
	f := &faults{err: errors.New("no space left on device"), release: make(chan struct{})}
	s, err := OpenWith(t.TempDir(), testSealer(t), Options{FS: errorfs.Wrap(vfs.Default, f)})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.Put(ctx, routing.Reversal{ID: "a", Issuer: "ssbank"}); err != nil {
		t.Fatal(err)
	}
	f.armed.Store(true)
	if err := s.Put(ctx, routing.Reversal{ID: "b", Issuer: "ssbank"}); err == nil {
		t.Fatal("Put on a failing disk = nil, want an error")
	}
	if err := s.Delete(ctx, "a"); err == nil {
		t.Fatal("Delete on a failing disk = nil, want an error")
	}
	if err := s.Health(); !errors.Is(err, ErrFailed) {
		t.Fatalf("Health = %v, want ErrFailed", err)
	}
	f.armed.Store(false)
	_ = s.Close()
}

// TestStoreStalledWriteIsBounded: a write that does not return gives up
// when its context ends (ErrStalled), and the store recovers once the disk
// returns.
func TestStoreStalledWriteIsBounded(t *testing.T) {
	f := &faults{release: make(chan struct{})}
	f.block.Store(true)
	s, err := OpenWith(t.TempDir(), testSealer(t), Options{FS: errorfs.Wrap(vfs.Default, f)})
	if err != nil {
		t.Fatal(err)
	}
	f.armed.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := s.Put(ctx, routing.Reversal{ID: "a", Issuer: "ssbank"}); !errors.Is(err, ErrStalled) {
		t.Fatalf("Put on a stalled disk = %v, want ErrStalled", err)
	}
	if err := s.Put(context.Background(), routing.Reversal{ID: "b"}); !errors.Is(err, ErrStalled) {
		t.Fatalf("Put with a write stalled = %v, want ErrStalled at once", err)
	}
	f.armed.Store(false)
	close(f.release)
	deadline := time.Now().Add(10 * time.Second)
	for s.Health() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("Health after the disk returned = %v", s.Health())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := s.Put(context.Background(), routing.Reversal{ID: "c"}); err != nil {
		t.Fatalf("Put after the disk returned: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestStoreRecoversAfterWriteError: after a fatal write error the store
// reopens itself once the disk is healed, without a restart: Put works
// again and every advice stored before the fault is still owed.
func TestStoreRecoversAfterWriteError(t *testing.T) {
	f := &faults{err: errors.New("no space left on device"), release: make(chan struct{})}
	s, err := OpenWith(t.TempDir(), testSealer(t), Options{FS: errorfs.Wrap(vfs.Default, f), ProbeInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.Put(ctx, routing.Reversal{ID: "a", Issuer: "ssbank"}); err != nil {
		t.Fatal(err)
	}
	f.armed.Store(true)
	if err := s.Put(ctx, routing.Reversal{ID: "b", Issuer: "ssbank"}); err == nil {
		t.Fatal("Put on a failing disk = nil, want an error")
	}
	if err := s.Health(); !errors.Is(err, ErrFailed) {
		t.Fatalf("Health = %v, want ErrFailed", err)
	}
	f.armed.Store(false)
	deadline := time.Now().Add(30 * time.Second)
	for s.Health() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("Health after the disk was healed = %v, want nil (recovery by itself)", s.Health())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := s.Put(ctx, routing.Reversal{ID: "c", Issuer: "ssbank"}); err != nil {
		t.Fatalf("Put after recovery: %v", err)
	}
	got, err := s.Pending(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for _, r := range got {
		ids[r.ID] = true
	}
	if !ids["a"] || !ids["c"] {
		t.Errorf("Pending after recovery = %v, want a and c", ids)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}
