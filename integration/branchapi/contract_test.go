package branchapi

import (
	"bytes"
	"encoding/json"
	"mime"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"gopkg.in/yaml.v3"
)

// The contract: every answer a test sees is checked against docs/openapi.yaml
// with a JSON Schema 2020-12 validator (OpenAPI 3.1 schemas are JSON Schema).

const contractURL = "file:///openapi.json"

var contract struct {
	once     sync.Once
	err      error
	doc      map[string]any
	compiler *jsonschema.Compiler
	mu       sync.Mutex
	schemas  map[string]*jsonschema.Schema
}

func loadContract() (map[string]any, error) {
	contract.once.Do(func() {
		var y any
		if err := yaml.Unmarshal(OpenAPI(), &y); err != nil {
			contract.err = err
			return
		}
		// YAML → JSON → the validator's own JSON decoding (numbers as json.Number).
		j, err := json.Marshal(y)
		if err != nil {
			contract.err = err
			return
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(j))
		if err != nil {
			contract.err = err
			return
		}
		c := jsonschema.NewCompiler()
		c.DefaultDraft(jsonschema.Draft2020)
		if err := c.AddResource(contractURL, doc); err != nil {
			contract.err = err
			return
		}
		contract.doc, contract.compiler, contract.schemas = doc.(map[string]any), c, map[string]*jsonschema.Schema{}
	})
	return contract.doc, contract.err
}

func schemaAt(pointer string) (*jsonschema.Schema, error) {
	contract.mu.Lock()
	defer contract.mu.Unlock()
	if s, ok := contract.schemas[pointer]; ok {
		return s, nil
	}
	s, err := contract.compiler.Compile(contractURL + "#" + pointer)
	if err != nil {
		return nil, err
	}
	contract.schemas[pointer] = s
	return s, nil
}

func esc(s string) string { return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1") }

// checkContract fails t if r is not an answer docs/openapi.yaml documents for
// method and path template: status code, content type and body schema.
func checkContract(t *testing.T, method, template string, r response) {
	t.Helper()
	doc, err := loadContract()
	if err != nil {
		t.Fatalf("load OpenAPI document: %v", err)
	}
	m := strings.ToLower(method)
	if m == "head" {
		m = "get"
	}
	op, ok := dig(doc, "paths", template, m)
	if !ok {
		// Paths and methods outside the contract may only be refused.
		if r.status != 404 && r.status != 405 {
			t.Errorf("%s %s: status %d for an undocumented operation", method, template, r.status)
		}
		checkProblemSchema(t, method, template, r)
		return
	}
	code := strconv.Itoa(r.status)
	resp, ok := dig(op, "responses", code)
	ptr := "/paths/" + esc(template) + "/" + m + "/responses/" + code
	if !ok {
		t.Errorf("%s %s: status %d is not in the contract", method, template, r.status)
		return
	}
	if ref, ok := resp.(map[string]any)["$ref"].(string); ok {
		ptr = strings.TrimPrefix(ref, "#")
		resp, _ = dig(doc, strings.Split(strings.TrimPrefix(ptr, "/"), "/")...)
	}
	if loc, ok := dig(resp, "headers", "Location"); ok && loc != nil && r.header.Get("Location") == "" {
		t.Errorf("%s %s: status %d without its Location header", method, template, r.status)
	}
	mt, _, err := mime.ParseMediaType(r.header.Get("Content-Type"))
	if err != nil {
		t.Errorf("%s %s: bad Content-Type %q", method, template, r.header.Get("Content-Type"))
		return
	}
	content, ok := dig(resp, "content", mt)
	if !ok {
		t.Errorf("%s %s: status %d with Content-Type %s is not in the contract", method, template, r.status, mt)
		return
	}
	if method == "HEAD" || mt == "application/yaml" {
		return
	}
	if _, ok := dig(content, "schema"); !ok {
		return
	}
	s, err := schemaAt(ptr + "/content/" + esc(mt) + "/schema")
	if err != nil {
		t.Fatalf("compile the schema of %s %s %d: %v", method, template, r.status, err)
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(r.body))
	if err != nil {
		t.Errorf("%s %s: status %d body is not JSON", method, template, r.status)
		return
	}
	if err := s.Validate(v); err != nil {
		t.Errorf("%s %s: status %d body does not validate against the contract: %v", method, template, r.status, err)
	}
}

func checkProblemSchema(t *testing.T, method, template string, r response) {
	t.Helper()
	if r.header.Get("Content-Type") != "application/problem+json" {
		t.Errorf("%s %s: Content-Type %q, want application/problem+json", method, template, r.header.Get("Content-Type"))
		return
	}
	s, err := schemaAt("/components/schemas/Problem")
	if err != nil {
		t.Fatal(err)
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(r.body))
	if err != nil {
		t.Errorf("%s %s: problem body is not JSON", method, template)
		return
	}
	if err := s.Validate(v); err != nil {
		t.Errorf("%s %s: problem does not validate: %v", method, template, err)
	}
}

func dig(v any, path ...string) (any, bool) {
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		p = strings.ReplaceAll(strings.ReplaceAll(p, "~1", "/"), "~0", "~")
		if v, ok = m[p]; !ok {
			return nil, false
		}
	}
	return v, true
}

func TestServedOpenAPIIsTheCanonicalOne(t *testing.T) {
	canonical, err := os.ReadFile("../../docs/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(OpenAPI(), canonical) {
		t.Fatalf("integration/branchapi/openapi.yaml differs from docs/openapi.yaml: copy docs/openapi.yaml over it")
	}
	doc, err := loadContract()
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := doc["openapi"].(string); !strings.HasPrefix(v, "3.1.") {
		t.Errorf("openapi = %q, want 3.1.x", v)
	}
}

func TestProblemTypesAreDocumented(t *testing.T) {
	doc, err := loadContract()
	if err != nil {
		t.Fatal(err)
	}
	enum, ok := dig(doc, "components", "schemas", "Problem", "properties", "type", "enum")
	if !ok {
		t.Fatal("Problem.type has no enum in the contract")
	}
	var documented []string
	for _, v := range enum.([]any) {
		documented = append(documented, v.(string))
	}
	var ours []string
	for _, k := range problemKinds {
		ours = append(ours, ProblemTypeBase+k.slug)
	}
	slices.Sort(documented)
	slices.Sort(ours)
	if !slices.Equal(documented, ours) {
		t.Errorf("problem types in the contract %v, in the code %v", documented, ours)
	}
	text, err := os.ReadFile("../../docs/branch-api.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range problemKinds {
		if !bytes.Contains(text, []byte("`"+k.slug+"`")) {
			t.Errorf("docs/branch-api.md does not explain the problem type %s", k.slug)
		}
	}
}

// Every schema of the contract compiles (a typo in a $ref or a pattern fails here).
func TestContractSchemasCompile(t *testing.T) {
	doc, err := loadContract()
	if err != nil {
		t.Fatal(err)
	}
	schemas, _ := dig(doc, "components", "schemas")
	for name := range schemas.(map[string]any) {
		if _, err := schemaAt("/components/schemas/" + name); err != nil {
			t.Errorf("schema %s: %v", name, err)
		}
	}
}
