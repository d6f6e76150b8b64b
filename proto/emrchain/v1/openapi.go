package emrchainv1

import _ "embed" // for OpenAPI

// OpenAPI is the OpenAPI (Swagger 2.0) document of the Query and TxService
// REST routes, generated from the protos by protoc-gen-openapiv2 (make proto)
// and served by emrchaind at /openapi.json.
//
//go:embed emrchain.swagger.json
var OpenAPI []byte
