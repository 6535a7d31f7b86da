// Package redisfailover holds the tests of gateways on a highly available
// Redis: the Redis Cluster (three masters, one replica each) and the
// Sentinel set (one master, one replica, three sentinels) of
// scripts/redis-cluster.sh, started once for the package in TestMain. Two
// gateways started in-process (integration/gateway/gatewaytest) share each
// set-up as limits.backend redis (limits.mode cluster or sentinel), which
// also holds the branch API's shared store and the duplicate window; the
// tests drive them over TCP (ISO 8583) and HTTPS (branch API) while a master
// is SIGKILLed.
//
// It has no code outside its tests. The failure policy they check is in
// docs/rate-limits.md ("When Redis fails", "Redis Cluster", "Redis
// Sentinel").
package redisfailover
