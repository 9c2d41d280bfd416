package main

import (
	"net"
	"net/http"
	"sync"
	"time"
)

// newConns tracks the client connections that have not sent a request
// yet. http.Server.Shutdown waits up to five seconds for such a
// connection to count as idle (a client may be opening one ahead of need),
// so without this a node with a silent connection open took five seconds
// to stop.
type newConns struct {
	mu    sync.Mutex
	conns map[net.Conn]time.Time // when each became new
}

// track is the server's ConnState hook.
func (c *newConns) track(conn net.Conn, state http.ConnState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if state == http.StateNew {
		if c.conns == nil {
			c.conns = map[net.Conn]time.Time{}
		}
		c.conns[conn] = time.Now()
		return
	}
	delete(c.conns, conn)
}

// closeSilent closes the connections that have been new for longer than
// grace: a request on its way would have made them active by then.
func (c *newConns) closeSilent(grace time.Duration) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	closed := 0
	for conn, since := range c.conns {
		if time.Since(since) >= grace {
			conn.Close()
			delete(c.conns, conn)
			closed++
		}
	}
	return closed
}
