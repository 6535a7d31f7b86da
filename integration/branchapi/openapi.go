package branchapi

import (
	_ "embed"
	"slices"
)

// openapiYAML is a copy of docs/openapi.yaml, the canonical contract (go:embed
// cannot reach outside the package); TestServedOpenAPIIsTheCanonicalOne
// keeps the two identical.
//
//go:embed openapi.yaml
var openapiYAML []byte

// OpenAPI returns the OpenAPI 3.1 document of the API, as served at
// GET /v1/openapi.yaml. The caller owns the copy.
func OpenAPI() []byte { return slices.Clone(openapiYAML) }
