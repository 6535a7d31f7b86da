package gateway

import (
	"strings"
	"testing"
)

// TestValidateKafkaTopicMinInSync: min.insync.replicas of a topic pingate
// creates must fit its replication factor.
func TestValidateKafkaTopicMinInSync(t *testing.T) {
	tests := []struct {
		replication, minInSync int
		wantErr                bool
	}{
		{3, 2, false},
		{3, 3, false},
		{0, 0, false}, // brokers' default, replication 1
		{0, 1, false},
		{0, 2, true}, // replication defaults to 1
		{3, 4, true},
		{3, -1, true},
	}
	for _, tt := range tests {
		cfg := EmbeddedConfig()
		cfg.Events.KafkaTopicReplication, cfg.Events.KafkaTopicMinInSync = tt.replication, tt.minInSync
		err := cfg.Validate()
		if got := err != nil && strings.Contains(err.Error(), "events.kafka_topic_min_insync_replicas"); got != tt.wantErr {
			t.Errorf("replication %d, min insync %d: Validate() = %v, want an error naming the key: %v",
				tt.replication, tt.minInSync, err, tt.wantErr)
		}
	}
}
