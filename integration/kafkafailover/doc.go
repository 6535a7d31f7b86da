// Package kafkafailover holds the broker-loss tests of a gateway publishing
// to a replicated Kafka: the three-node KRaft cluster of
// scripts/kafka-cluster.sh (replication factor 3, min.insync.replicas=2,
// the relay producing with acks=all), started once for the package in
// TestMain, and a gateway started in-process (integration/gateway/gatewaytest)
// that the load generator (integration/loadgen) drives over TCP while nodes
// are SIGKILLed. An independent Kafka client (twmb/franz-go, not the
// gateway's segmentio/kafka-go) reads the topic back.
//
// It has no code outside its tests. The failure modes and the figures these
// tests measured are in docs/operations.md ("Kafka cluster: replication and
// broker loss").
package kafkafailover
