package events

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// schemaJSON is the canonical JSON Schema of the record value.
// docs/events.schema.json is a copy kept identical by TestSchemaDocCopy
// (go:embed cannot reach outside the package directory).
//
//go:embed events.schema.json
var schemaJSON []byte

// SchemaURL is the $id of the schema.
const SchemaURL = "urn:pingate:events:outcome:v1"

// Schema returns a copy of the JSON Schema (2020-12) of the record value.
func Schema() []byte { return bytes.Clone(schemaJSON) }

var compiled = sync.OnceValues(func() (*jsonschema.Schema, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(schemaJSON))
	if err != nil {
		return nil, err
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource(SchemaURL, doc); err != nil {
		return nil, err
	}
	return c.Compile(SchemaURL)
})

// ValidateBody checks a record value against the schema, with formats
// (date-time) asserted. The error wraps ErrMalformed and names only the
// failing locations, never the values found there.
func ValidateBody(value []byte) error {
	sch, err := compiled()
	if err != nil {
		return fmt.Errorf("compile event schema: %w", err)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(value))
	if err != nil {
		return fmt.Errorf("%w: body is not JSON", ErrMalformed)
	}
	if err := sch.Validate(inst); err != nil {
		var ve *jsonschema.ValidationError
		if errors.As(err, &ve) {
			return fmt.Errorf("%w: schema violation at %s", ErrMalformed, strings.Join(locations(ve, nil), ", "))
		}
		return fmt.Errorf("%w: schema violation", ErrMalformed)
	}
	return nil
}

// locations lists the instance locations of the leaf causes of ve.
func locations(ve *jsonschema.ValidationError, acc []string) []string {
	if len(ve.Causes) == 0 {
		loc := "/" + strings.Join(ve.InstanceLocation, "/")
		for _, a := range acc {
			if a == loc {
				return acc
			}
		}
		return append(acc, loc)
	}
	for _, c := range ve.Causes {
		acc = locations(c, acc)
	}
	return acc
}
