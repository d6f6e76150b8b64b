package client

import "time"

// SetClock makes c check headers against now instead of time.Now.
func SetClock(c *Client, now func() time.Time) { c.now = now }
