// Package ctxtime waits on the clock for as long as a context lets it: the
// pauses between polls and retries, and a rate limit's sleep, of the
// sidecar, the node's tx service and the load and test tools.
package ctxtime
