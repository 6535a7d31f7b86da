package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"pingate/routing"
)

// TestSchemaDocCopy keeps docs/events.schema.json identical to the embedded
// canonical schema.
func TestSchemaDocCopy(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "events.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(doc, Schema()) {
		t.Error("docs/events.schema.json differs from integration/events/events.schema.json; copy the latter over the former")
	}
}

// TestSchemaRejects proves the schema can fail: each body is a valid one with
// one thing wrong.
func TestSchemaRejects(t *testing.T) {
	m, err := mustEncoder(t).Encode(sampleEvent(routing.OpChange, routing.OutcomeDeclined))
	if err != nil {
		t.Fatal(err)
	}
	if err := ValidateBody(m.Value); err != nil {
		t.Fatalf("ValidateBody(valid) = %v", err)
	}
	edit := func(f func(map[string]any)) []byte {
		var o map[string]any
		if err := json.Unmarshal(m.Value, &o); err != nil {
			t.Fatal(err)
		}
		f(o)
		b, _ := json.Marshal(o)
		return b
	}
	tests := []struct {
		name string
		give []byte
		at   string
	}{
		{"extra pin_block property", edit(func(o map[string]any) { o["pin_block"] = "0412AC89ABCDEF67" }), "/"},
		{"full pan in masked_pan", edit(func(o map[string]any) { o["masked_pan"] = "4242424242424242" }), "/masked_pan"},
		{"pan as card token", edit(func(o map[string]any) { o["card_token"] = "4242424242424242" }), "/card_token"},
		{"declined with 00", edit(func(o map[string]any) { o["response_code"] = "00" }), "/response_code"},
		{"approved with 55", edit(func(o map[string]any) { o["outcome"] = "approved" }), "/response_code"},
		{"missing received", edit(func(o map[string]any) { delete(o, "received") }), "/"},
		{"bad date-time", edit(func(o map[string]any) { o["completed"] = "25/11/2025" }), "/completed"},
		{"unknown operation", edit(func(o map[string]any) { o["operation"] = "steal" }), "/operation"},
		{"upper-case trace id", edit(func(o map[string]any) { o["trace_id"] = strings.ToUpper(o["trace_id"].(string)) }), "/trace_id"},
		{"not an object", []byte(`[]`), "/"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateBody(tt.give)
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("ValidateBody() = %v, want %v", err, ErrMalformed)
			}
			if !strings.Contains(err.Error(), tt.at) {
				t.Errorf("ValidateBody() = %v, want a location %s", err, tt.at)
			}
			if strings.Contains(err.Error(), "4242424242") || strings.Contains(err.Error(), "0412AC89") {
				t.Error("ValidateBody error echoes the value")
			}
		})
	}
}
