package outbox

import (
	"errors"
	"testing"

	"github.com/segmentio/kafka-go"
)

// TestRefusedKeepsOnlyFailedRecords: after a partial failure only the
// records Kafka refused are sent again, in their order.
func TestRefusedKeepsOnlyFailedRecords(t *testing.T) {
	msgs := []kafka.Message{{Value: []byte("a")}, {Value: []byte("b")}, {Value: []byte("c")}, {Value: []byte("d")}}
	boom := errors.New("not leader")
	tests := []struct {
		give kafka.WriteErrors
		want string
	}{
		{kafka.WriteErrors{nil, boom, nil, boom}, "bd"},
		{kafka.WriteErrors{boom, nil, nil, nil}, "a"},
		{kafka.WriteErrors{nil, nil, nil, nil}, ""},
		{kafka.WriteErrors{boom, boom, boom, boom}, "abcd"},
	}
	for _, tt := range tests {
		got := ""
		for _, m := range refused(msgs, tt.give) {
			got += string(m.Value)
		}
		if got != tt.want {
			t.Errorf("refused(%v) = %q, want %q", tt.give, got, tt.want)
		}
	}
}
