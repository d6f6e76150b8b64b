package abci

// Codespace is the codespace of the codes the adapter itself sets, so they
// can never be confused with the state machine's codes (whose codespace is
// the app's own).
const Codespace = "abci"

// Codes the adapter sets in QueryResponse.Code, in Codespace. Transaction
// codes come from the state machine only.
const (
	// CodeUnknownPath: the query path names no query the node serves.
	CodeUnknownPath uint32 = 1
	// CodeInvalidQuery: the request is malformed before it ever reaches the
	// state machine: a negative height, a height not committed yet, or a
	// store query without a key.
	CodeInvalidQuery uint32 = 2
	// CodeInternal: the query failed without an app error code (e.g. a
	// storage fault or a recovered panic). Log says more.
	CodeInternal uint32 = 3
	// CodeClosed: the node is shutting down.
	CodeClosed uint32 = 4
	// CodePeerRefused: a peer filter query for a node id that is not one
	// of Options.AllowedPeers, or any node id when it is empty (CometBFT
	// then drops the connection).
	CodePeerRefused uint32 = 5
)
