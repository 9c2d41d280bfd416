package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"
)

// probe is `dynamo probe`: it asks the node this environment configures
// (DYNAMO_LISTEN, or the default) whether it is ready, for container health
// checks in images that have no shell or curl. It succeeds only on a 200
// from /readyz within two seconds.
func probe(getenv func(string) string) error {
	addr := getenv("DYNAMO_LISTEN")
	if addr == "" {
		addr = "127.0.0.1:8080"
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("probe: DYNAMO_LISTEN %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1" // a node listening on every address answers on loopback
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	url := "http://" + net.JoinHostPort(host, port) + "/readyz"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("probe: %s answered %s", url, resp.Status)
	}
	return nil
}
