// Package pebblestore opens a cockroachdb/pebble database that survives a
// fatal storage error in process: the outcome journal (integration/outbox)
// and the reversal store (integration/reversalstore) build on it.
//
// pebble reports a storage error it cannot recover from (a failed WAL write
// in its commit pipeline, a failed MANIFEST write) through its logger's
// Fatalf and expects the process to stop; its in-memory state after that is
// not to be trusted. A DB does not stop the process: Fatalf marks it failed
// (Fault), and a supervisor goroutine the DB owns takes the broken instance
// out of use, waits for the last user to release it, closes it, probes until
// the directory can be written again (a synced probe file, and the free
// space above Options.MinFree), and reopens the database on the same
// directory, where pebble's own recovery replays the WAL: every write that
// was synced before the fault is there again. Users then see the new
// instance (Acquire) and Fault is cleared.
//
// The directory lock is taken once, with pebble.LockDirectory, and held by
// the DB for its whole life (Options.Lock): a reopen in the same process
// does not trip over pebble's in-process lock table, and pebble refuses to
// open a second instance on the lock while the first is not closed, so two
// instances never write one directory.
package pebblestore
