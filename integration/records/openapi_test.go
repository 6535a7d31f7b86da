package records

import (
	"bytes"
	"os"
	"testing"
)

// TestOpenAPIDocCopy: docs/records-openapi.yaml is the served document.
func TestOpenAPIDocCopy(t *testing.T) {
	doc, err := os.ReadFile("../../docs/records-openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(doc, OpenAPI) {
		t.Errorf("docs/records-openapi.yaml differs from integration/records/openapi.yaml: copy it")
	}
}
