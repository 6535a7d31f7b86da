package redislimit

import (
	"fmt"
	"testing"
	"time"
)

func TestLocalBuckets(t *testing.T) {
	l := newLocalBuckets(2, 3) // 2 per second, burst 3
	t0 := time.Unix(1_700_000_000, 0)
	for i := range 3 {
		if !l.allow("k", t0) {
			t.Fatalf("allow #%d at t0 = false, want true (burst 3)", i+1)
		}
	}
	if l.allow("k", t0) {
		t.Fatal("allow #4 at t0 = true, want false")
	}
	if !l.allow("other", t0) {
		t.Fatal("allow(other key) = false, want true: keys are independent")
	}
	if !l.allow("k", t0.Add(500*time.Millisecond)) { // one token back after 0.5 s at 2/s
		t.Fatal("allow after 0.5s = false, want true")
	}
	if l.allow("k", t0.Add(500*time.Millisecond)) {
		t.Fatal("second allow after 0.5s = true, want false")
	}
}

func TestLocalBucketsSweep(t *testing.T) {
	l := newLocalBuckets(1, 1)
	t0 := time.Unix(1_700_000_000, 0)
	for i := range maxLocalKeys {
		l.allow(fmt.Sprint(i), t0)
	}
	l.allow("new", t0.Add(time.Hour)) // every old bucket is full again: swept
	if got := len(l.m); got != 1 {
		t.Errorf("after sweep len = %d, want 1", got)
	}
}
