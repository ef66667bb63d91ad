package httpapi

import (
	"context"
	_ "embed"

	"github.com/getkin/kin-openapi/openapi3"
)

//go:embed openapi.yaml
var openapiYAML []byte

// OpenAPI returns a fresh copy of the API's OpenAPI 3 document (the
// platform routes; extensions add theirs in New). It is validated by the
// tests, and checked against real responses there.
func OpenAPI() *openapi3.T {
	doc, err := openapi3.NewLoader().LoadFromData(openapiYAML)
	if err != nil {
		panic("httpapi: embedded openapi.yaml: " + err.Error())
	}
	return doc
}

// ValidateOpenAPI validates a document (tests; extensions check theirs).
func ValidateOpenAPI(ctx context.Context, doc *openapi3.T) error {
	return doc.Validate(ctx)
}
