package client

// CheckUploaderSignature exposes the provenance check of Download to the
// black-box tests, which forge records a chain would never hold.
var CheckUploaderSignature = (*Client).checkUploaderSignature
