package node

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dynamo-kv/dynamo/replication"
)

// Config configures a Node. Every field has the meaning of the flag of the
// same name in the contract (CONTRACT.md §1).
type Config struct {
	// ID names the node uniquely and for good: its data dir remembers it.
	ID string
	// Listen is the client REST address. The node does not serve it (the
	// api package does), but advertises it to the other members.
	Listen string
	// PeerListen is the node-to-node replication address.
	PeerListen string
	// GossipListen is the memberlist address, TCP and UDP.
	GossipListen string
	// Advertise is the host other nodes dial when it differs from the bind
	// hosts; empty means each bind host.
	Advertise string
	// Join lists gossip addresses of existing members; empty starts a new
	// cluster (or rejoins the members this data dir remembers).
	Join []string
	// DataDir holds everything the node must not lose.
	DataDir string

	// N, R and W are replicas per key and the default read and write
	// quorums; all three are capped at the member count.
	N, R, W int
	// Partitions is the number of ring partitions, fixed for the cluster's life.
	Partitions int
	// RequestTimeout is the coordinator's deadline for one client request.
	RequestTimeout time.Duration
	// MaxValueBytes is the largest value accepted.
	MaxValueBytes int64
	// SiblingWarn is the sibling count above which a read or write of a
	// key is counted (dynamo_sibling_warnings_total), logged at most once a
	// minute per key, and answered with a Warning header by the API.
	SiblingWarn int
	// MaxSiblings is the most live siblings a write may leave on a key: a
	// write that would leave more, and more than the key holds, is refused
	// with ErrTooManySiblings by its coordinator. Replicas merging what
	// others accepted never refuse, so a key can exceed it after
	// concurrent writes through several coordinators; with MaxValueBytes it
	// bounds what a write can make a key hold.
	MaxSiblings int
	// HintedHandoff keeps hints for unreachable replicas.
	HintedHandoff bool
	// AntiEntropyInterval is how often replicas compare Merkle trees; 0 turns it off.
	AntiEntropyInterval time.Duration
	// TombstoneGrace is how long a tombstone outlives its arrival on every replica.
	TombstoneGrace time.Duration
	// HandoffBytesPerSecond throttles the partition data a node pulls
	// after a ring change; 0 means unthrottled.
	HandoffBytesPerSecond int64
	// MaxHints bounds the hints this node keeps for unreachable replicas;
	// past it the oldest are dropped (anti-entropy repairs their targets).
	MaxHints int
	// GossipProfile picks memberlist's timing: "lan" (production) or
	// "local" (fast failure detection for tests on one machine).
	GossipProfile string

	// Dependencies. Nil means the production implementation.

	// Transport carries node-to-node requests; nil builds the peer
	// transport over PeerListen.
	Transport replication.Transport
	// Membership tells who is in the cluster; nil builds memberlist gossip
	// on GossipListen.
	Membership Membership
	// Registry receives the node's metrics; nil creates one.
	Registry *prometheus.Registry
	// Logger receives the node's logs; nil discards them.
	Logger *slog.Logger
	// Now is the node's clock; nil means time.Now.
	Now func() time.Time
}

// The defaults of SiblingWarn and MaxSiblings (--sibling-warn and
// --max-siblings). Riak's max_siblings is 100 too; a key with even 25
// siblings is almost surely written by a client that never resolves.
const (
	DefaultSiblingWarn = 25
	DefaultMaxSiblings = 100
)

// DefaultConfig returns the contract's defaults.
func DefaultConfig() Config {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "dynamo"
	}
	return Config{
		ID:                    host,
		Listen:                "127.0.0.1:8080",
		PeerListen:            "127.0.0.1:8081",
		GossipListen:          "127.0.0.1:7946",
		DataDir:               "./data",
		N:                     3,
		R:                     2,
		W:                     2,
		Partitions:            256,
		RequestTimeout:        2 * time.Second,
		MaxValueBytes:         1 << 20,
		SiblingWarn:           DefaultSiblingWarn,
		MaxSiblings:           DefaultMaxSiblings,
		HintedHandoff:         true,
		AntiEntropyInterval:   30 * time.Second,
		TombstoneGrace:        time.Hour,
		MaxHints:              1_000_000,
		HandoffBytesPerSecond: 32 << 20,
		GossipProfile:         "lan",
	}
}

// LocalConfig returns DefaultConfig with the short timeouts that tests on
// one machine want.
func LocalConfig() Config {
	c := DefaultConfig()
	c.RequestTimeout = time.Second
	c.GossipProfile = "local"
	return c
}

// Validate checks every field and the rules between fields.
func (c Config) Validate() error {
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	check(c.ID != "", "id must not be empty")
	check(len(c.ID) <= 255, "id must be at most 255 bytes")
	check(c.DataDir != "", "data-dir must not be empty")
	check(c.N >= 1, "n must be at least 1, got %d", c.N)
	check(c.R >= 1 && c.R <= c.N, "r must be between 1 and n (%d), got %d", c.N, c.R)
	check(c.W >= 1 && c.W <= c.N, "w must be between 1 and n (%d), got %d", c.N, c.W)
	check(c.Partitions >= 1 && c.Partitions <= 1<<16, "partitions must be between 1 and 65536, got %d", c.Partitions)
	check(c.RequestTimeout > 0, "request-timeout must be positive, got %s", c.RequestTimeout)
	check(c.MaxValueBytes >= 0 && c.MaxValueBytes <= 64<<20, "max-value-bytes must be between 0 and 64 MiB, got %d", c.MaxValueBytes)
	check(c.MaxSiblings >= 1, "max-siblings must be at least 1, got %d", c.MaxSiblings)
	check(c.SiblingWarn >= 1 && c.SiblingWarn <= c.MaxSiblings, "sibling-warn must be between 1 and max-siblings (%d), got %d", c.MaxSiblings, c.SiblingWarn)
	check(c.AntiEntropyInterval >= 0, "anti-entropy-interval must not be negative")
	check(c.TombstoneGrace >= 0, "tombstone-grace must not be negative")
	check(c.HandoffBytesPerSecond >= 0, "handoff-bytes-per-second must not be negative")
	check(c.MaxHints >= 1, "max-hints must be at least 1, got %d", c.MaxHints)
	check(c.GossipProfile == "lan" || c.GossipProfile == "local", "gossip profile must be lan or local, got %q", c.GossipProfile)
	if c.Transport == nil {
		check(validHostPort(c.PeerListen), "peer-listen must be host:port, got %q", c.PeerListen)
	}
	if c.Membership == nil {
		check(validHostPort(c.GossipListen), "gossip-listen must be host:port, got %q", c.GossipListen)
	}
	check(c.Listen == "" || validHostPort(c.Listen), "listen must be host:port, got %q", c.Listen)
	return errors.Join(errs...)
}

func validHostPort(s string) bool {
	_, port, err := net.SplitHostPort(s)
	return err == nil && port != ""
}

// advertised returns the address other nodes should dial for a bind
// address: the advertise host, if set, with the bind port. A bind on every
// interface (0.0.0.0, ::, or no host) with no advertise host advertises the
// machine's first private address, as memberlist does.
func (c Config) advertised(bind string) string {
	host, port, err := net.SplitHostPort(bind)
	if err != nil {
		return bind
	}
	switch {
	case c.Advertise != "":
		host = c.Advertise
	case host == "" || net.ParseIP(host).IsUnspecified():
		host = privateIP()
	}
	return net.JoinHostPort(host, port)
}

// privateIP returns the first non-loopback IPv4 address of an interface
// that is up, or "127.0.0.1" when there is none.
func privateIP() string {
	ifaces, err := net.Interfaces()
	if err != nil {
		return "127.0.0.1"
	}
	for _, iface := range ifaces {
		if iface.Flags&net.FlagUp == 0 || iface.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, _ := iface.Addrs()
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil && !ipn.IP.IsLoopback() {
				return ipn.IP.String()
			}
		}
	}
	return "127.0.0.1"
}

// resolveIP turns a host name into the IP address memberlist insists on.
func resolveIP(host string) (string, error) {
	if host == "" {
		return "0.0.0.0", nil
	}
	if net.ParseIP(host) != nil {
		return host, nil
	}
	ips, err := net.LookupIP(host)
	if err != nil || len(ips) == 0 {
		return "", fmt.Errorf("cannot resolve %q: %v", host, err)
	}
	for _, ip := range ips {
		if ip.To4() != nil {
			return ip.String(), nil
		}
	}
	return ips[0].String(), nil
}
