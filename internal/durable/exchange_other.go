//go:build !linux

package durable

import "fmt"

// Exchange is ErrNoExchange where renameat2 is missing: the caller falls
// back to two renames.
func Exchange(a, b string) error {
	return fmt.Errorf("%w: exchange %s and %s", ErrNoExchange, a, b)
}
