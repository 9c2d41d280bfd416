package main

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestFlagsDefaultToTheContract(t *testing.T) {
	o, err := parseFlags(nil, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	c := o.node
	if c.Listen != "127.0.0.1:8080" || c.PeerListen != "127.0.0.1:8081" || c.GossipListen != "127.0.0.1:7946" ||
		c.DataDir != "./data" || c.N != 3 || c.R != 2 || c.W != 2 || c.Partitions != 256 ||
		c.RequestTimeout != 2*time.Second || c.MaxValueBytes != 1048576 || !c.HintedHandoff ||
		c.AntiEntropyInterval != 30*time.Second || c.TombstoneGrace != time.Hour || len(c.Join) != 0 || c.ID == "" {
		t.Fatalf("defaults differ from the contract: %+v", c)
	}
	if c.SiblingWarn != 25 || c.MaxSiblings != 100 {
		t.Fatalf("sibling-warn %d, max-siblings %d; want 25 and 100", c.SiblingWarn, c.MaxSiblings)
	}
}

func TestSiblingFlags(t *testing.T) {
	env := map[string]string{"DYNAMO_MAX_SIBLINGS": "40"}
	o, err := parseFlags([]string{"--sibling-warn=8"}, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.node.SiblingWarn != 8 || o.node.MaxSiblings != 40 {
		t.Fatalf("sibling-warn %d, max-siblings %d; want 8 and 40", o.node.SiblingWarn, o.node.MaxSiblings)
	}
}

func TestEnvironmentFillsFlagsAndFlagsWin(t *testing.T) {
	env := map[string]string{
		"DYNAMO_ID":              "from-env",
		"DYNAMO_N":               "5",
		"DYNAMO_PEER_LISTEN":     "127.0.0.1:9999",
		"DYNAMO_JOIN":            "a:1, b:2",
		"DYNAMO_HINTED_HANDOFF":  "false",
		"DYNAMO_REQUEST_TIMEOUT": "750ms",
	}
	o, err := parseFlags([]string{"--id=from-flag", "--r=3"}, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	c := o.node
	if c.ID != "from-flag" {
		t.Errorf("id = %q, want the flag to win", c.ID)
	}
	if c.N != 5 || c.R != 3 || c.PeerListen != "127.0.0.1:9999" || c.HintedHandoff || c.RequestTimeout != 750*time.Millisecond {
		t.Errorf("environment not applied: %+v", c)
	}
	if strings.Join(c.Join, "|") != "a:1|b:2" {
		t.Errorf("join = %q", c.Join)
	}
}

func TestInvalidSettingsAreRejected(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{args: []string{"--r=4"}, want: "r must be between 1 and n"},
		{args: []string{"--w=0"}, want: "w must be between 1 and n"},
		{args: []string{"--partitions=0"}, want: "partitions"},
		{args: []string{"--max-siblings=0"}, want: "max-siblings must be at least 1"},
		{args: []string{"--sibling-warn=0"}, want: "sibling-warn must be between 1 and max-siblings"},
		{args: []string{"--sibling-warn=101"}, want: "sibling-warn must be between 1 and max-siblings (100)"},
		{env: map[string]string{"DYNAMO_MAX_SIBLINGS": "10"}, want: "sibling-warn must be between 1 and max-siblings (10), got 25"},
		{args: []string{"--listen=nonsense"}, want: "listen"},
		{env: map[string]string{"DYNAMO_N": "three"}, want: "DYNAMO_N"},
		{args: []string{"stray"}, want: "unexpected arguments"},
	} {
		_, err := parseFlags(tc.args, func(k string) string { return tc.env[k] }, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("args %q env %v: err = %v, want it to mention %q", tc.args, tc.env, err, tc.want)
		}
	}
}

func TestProbe(t *testing.T) {
	var notReady atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" || notReady.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	env := func(addr string) func(string) string {
		return func(k string) string {
			if k == "DYNAMO_LISTEN" {
				return addr
			}
			return ""
		}
	}
	for _, addr := range []string{"127.0.0.1:" + port, "0.0.0.0:" + port, ":" + port} {
		if err := probe(env(addr)); err != nil {
			t.Errorf("probe with DYNAMO_LISTEN=%s: %v", addr, err)
		}
	}
	notReady.Store(true)
	if err := probe(env("127.0.0.1:" + port)); err == nil {
		t.Error("probe succeeded against a node that is not ready")
	}
	if err := probe(env("no-port")); err == nil {
		t.Error("probe accepted a malformed address")
	}
}
