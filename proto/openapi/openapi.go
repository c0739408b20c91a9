// Package openapi holds the OpenAPI (Swagger 2.0) document of the tidings.v1
// HTTP/JSON API. `make proto` generates tidings.swagger.json from the
// google.api.http annotations of the proto (protoc-gen-openapiv2, pinned in
// go.mod) and `make check-generated` fails when it is stale.
package openapi

import _ "embed"

// Document is the OpenAPI document, as JSON.
//
//go:embed tidings.swagger.json
var Document []byte
