// Package testservers starts real servers for integration tests: a
// redis-server and a single-node Apache Kafka 3.9 broker in KRaft mode, each on
// free loopback ports, as child processes of the test binary (exec.CommandContext),
// stopped in t.Cleanup. It follows the pattern of envoyproxy/ratelimit
// test/common (startCacheProcess): real servers in integration tests, fakes in
// unit tests only.
//
// The binaries are not installed here. redis-server must be on PATH, and the
// Kafka broker jars (org.apache.kafka:kafka_2.13:3.9.1 and its runtime
// dependencies) must be in $KAFKA_LIBS or in .services/kafka-libs under the
// repository root, with java on PATH. ./scripts/services.sh start installs all
// of them. When something is missing the test is skipped with the reason — or,
// when the environment variable CI is "true", failed, so CI never passes by
// skipping.
//
// Usage in a Kafka test (topics must exist before the first write; the broker
// runs with auto.create.topics.enable=false):
//
//	func TestPublish(t *testing.T) {
//		k := testservers.StartKafka(t) // stopped in t.Cleanup
//		testservers.CreateTopic(t, k.Brokers, "pingate.events", 3)
//		tr := &kafka.Transport{} // kafka.DefaultTransport keeps idle goroutines: goleak reports them
//		defer tr.CloseIdleConnections()
//		w := &kafka.Writer{Addr: kafka.TCP(k.Brokers), Topic: "pingate.events",
//			RequiredAcks: kafka.RequireAll, Transport: tr}
//		defer w.Close()
//		// ... write, read back ...
//		k.Stop()  // broker down: exercise the failure path
//		k.Start() // same port, same data: the topics and messages are still there
//	}
//
// And in a Redis test:
//
//	addr, stop := testservers.StartRedis(t) // stop is also run by t.Cleanup
//	rdb := redis.NewClient(&redis.Options{Addr: addr})
//
// For a Redis that must go down and come back, use StartRedisServer, whose
// Stop and Start keep the port (Redis runs without persistence, so a
// restarted server is empty).
//
// Each Start* call costs a fresh process: about 10 ms for Redis and 3–8 s for
// Kafka (two JVM starts: storage format, then the broker) on a loaded 2-core
// machine, so share one broker between the subtests of a test where you can;
// a Kafka Start after Stop costs one JVM start.
// Functions taking a testing.TB must be called from the test's goroutine.
package testservers
