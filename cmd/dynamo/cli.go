package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/dynamo-kv/dynamo/client"
)

// Exit codes of the client subcommands.
const (
	exitOK       = 0 // done; for get, the key has one value or siblings
	exitError    = 1 // a node answered an error, none answered, or a local file failed
	exitUsage    = 2 // bad flags or arguments; nothing was sent
	exitNotFound = 3 // get: the key has no live value (never written, or deleted)
)

const cliUsage = `Usage:
  dynamo [flags]                      run a node (dynamo --help lists the flags)
  dynamo get [flags] KEY              read a key
  dynamo put [flags] KEY [VALUE|-]    write VALUE, --file, or standard input (-, or no VALUE)
  dynamo delete [flags] KEY           delete a key
  dynamo cluster [flags] [KEY]        the members, or where KEY lives
  dynamo probe                        exit 0 when the local node is ready (for containers)

Flags go before or after the arguments; -- ends them.
Exit codes: 0 done, 1 error, 2 usage, 3 not found (get).
"dynamo <command> --help" lists a command's flags.
`

// isCLICommand reports whether a first argument names a client subcommand
// rather than the node's flags.
func isCLICommand(arg string) bool {
	switch arg {
	case "get", "put", "delete", "cluster", "help":
		return true
	}
	return false
}

// cli is one run of a client subcommand: its streams and environment.
type cli struct {
	getenv func(string) string
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
}

// commonFlags are the flags every subcommand has.
type commonFlags struct {
	addr    string
	timeout time.Duration
	verbose bool
}

func (c *cli) common(fs *flag.FlagSet) *commonFlags {
	f := &commonFlags{}
	addr := c.getenv("DYNAMO_ADDR")
	if addr == "" {
		addr = "127.0.0.1:8080"
	}
	fs.StringVar(&f.addr, "addr", addr, "node client address(es), host:port, comma separated; tried in turn ($DYNAMO_ADDR)")
	fs.DurationVar(&f.timeout, "timeout", 10*time.Second, "give up after this long, retries included")
	fs.BoolVar(&f.verbose, "v", false, "also print the context, content types and times to standard error")
	return f
}

// runCLI runs the subcommand args[0] with the arguments after it and
// returns the process's exit code.
func runCLI(args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	c := &cli{getenv: getenv, stdin: stdin, stdout: stdout, stderr: stderr}
	switch args[0] {
	case "get":
		return c.get(args[1:])
	case "put":
		return c.put(args[1:])
	case "delete":
		return c.delete(args[1:])
	case "cluster":
		return c.cluster(args[1:])
	default: // help
		fmt.Fprint(stdout, cliUsage)
		return exitOK
	}
}

// usageError reports a usage mistake and returns exitUsage.
func (c *cli) usageError(cmd string, format string, args ...any) int {
	fmt.Fprintf(c.stderr, "dynamo %s: %s\n", cmd, fmt.Sprintf(format, args...))
	fmt.Fprintf(c.stderr, "run 'dynamo %s --help' for its flags\n", cmd)
	return exitUsage
}

// fail reports an error and returns exitError.
func (c *cli) fail(cmd string, err error) int {
	fmt.Fprintf(c.stderr, "dynamo %s: %v\n", cmd, err)
	return exitError
}

// newFlagSet returns the flag set of cmd, whose usage line is synopsis.
func (c *cli) newFlagSet(cmd, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet("dynamo "+cmd, flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	fs.Usage = func() {
		fmt.Fprintf(c.stderr, "Usage: dynamo %s %s\n\nFlags:\n", cmd, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses flags anywhere among args and returns the other arguments.
// It returns an exit code when the command must stop: 0 after --help, 2
// for a bad flag.
func parse(fs *flag.FlagSet, args []string) (positional []string, exit int, stop bool) {
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, exitOK, true
			}
			return nil, exitUsage, true
		}
		rest := fs.Args()
		if consumed := args[:len(args)-len(rest)]; len(consumed) > 0 && consumed[len(consumed)-1] == "--" {
			return append(positional, rest...), 0, false
		}
		if len(rest) == 0 {
			return positional, 0, false
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}

// newClient builds the client of a command: no routing (one request does
// not pay for fetching the ring), failing over between the addresses.
func (f *commonFlags) newClient() (*client.Client, error) {
	var addrs []string
	for _, a := range strings.Split(f.addr, ",") {
		if a = strings.TrimSpace(a); a != "" {
			addrs = append(addrs, a)
		}
	}
	return client.New(addrs, client.WithRouting(false))
}

// parseQuorum reads --r or --w: a count, or one, quorum or all; "" is the
// node's default.
func parseQuorum(s string) (int, error) {
	switch s {
	case "":
		return 0, nil
	case "one":
		return client.QuorumOne, nil
	case "quorum":
		return client.QuorumMajority, nil
	case "all":
		return client.QuorumAll, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("%q is not a count from 1 or one, quorum, all", s)
	}
	return n, nil
}

func (c *cli) get(args []string) int {
	fs := c.newFlagSet("get", "[flags] KEY")
	common := c.common(fs)
	r := fs.String("r", "", "read quorum: a count, or one, quorum, all (default: the node's)")
	contextFile := fs.String("context-file", "", "write the read's context token to this file (empty when there is none), for a later put or delete")
	asJSON := fs.Bool("json", false, `print {"context": ..., "siblings": [{"content_type", "value" (base64), "last_modified"}]} instead`)
	pos, exit, stop := parse(fs, args)
	if stop {
		return exit
	}
	if len(pos) != 1 {
		return c.usageError("get", "want one KEY, got %d arguments", len(pos))
	}
	quorum, err := parseQuorum(*r)
	if err != nil {
		return c.usageError("get", "--r: %v", err)
	}
	cl, err := common.newClient()
	if err != nil {
		return c.usageError("get", "--addr: %v", err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), common.timeout)
	defer cancel()

	res, err := cl.Get(ctx, pos[0], client.R(quorum))
	notFound := errors.Is(err, client.ErrNotFound)
	if err != nil && !notFound {
		return c.fail("get", err)
	}
	if *contextFile != "" {
		if err := writeContextFile(*contextFile, res.Context); err != nil {
			return c.fail("get", err)
		}
	}
	if common.verbose {
		fmt.Fprintf(c.stderr, "context: %s\n", res.Context)
	}
	switch {
	case *asJSON:
		printJSON(c.stdout, res)
	case notFound:
		fmt.Fprintf(c.stderr, "dynamo get: %q not found\n", pos[0])
	case len(res.Siblings) == 1:
		s := res.Siblings[0]
		if common.verbose {
			fmt.Fprintf(c.stderr, "content-type: %s\nlast-modified: %s\n", s.ContentType, formatTime(s.LastModified))
		}
		c.stdout.Write(s.Value)
	default:
		printSiblings(c.stdout, res.Siblings)
	}
	if notFound {
		return exitNotFound
	}
	return exitOK
}

// jsonResult is what get --json prints: the shape of the node's own JSON
// representation (Accept: application/json).
type jsonResult struct {
	Context  string        `json:"context"`
	Siblings []jsonSibling `json:"siblings"`
}

type jsonSibling struct {
	ContentType  string `json:"content_type"`
	Value        []byte `json:"value"`
	LastModified string `json:"last_modified,omitempty"`
}

func printJSON(w io.Writer, res *client.Result) {
	out := jsonResult{Context: res.Context, Siblings: []jsonSibling{}}
	for _, s := range res.Siblings {
		js := jsonSibling{ContentType: s.ContentType, Value: s.Value}
		if !s.LastModified.IsZero() {
			js.LastModified = s.LastModified.UTC().Format(time.RFC3339)
		}
		out.Siblings = append(out.Siblings, js)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(out) //nolint:errcheck // stdout; nothing better to do
}

// printSiblings lists siblings for people: a header line each, then the
// value as text when it is text, else in base64.
func printSiblings(w io.Writer, siblings []client.Sibling) {
	fmt.Fprintf(w, "%d siblings: write with --context-file (or --context) from this read to replace them\n", len(siblings))
	for i, s := range siblings {
		text := isText(s.Value)
		form := ""
		if !text {
			form = ", base64"
		}
		fmt.Fprintf(w, "--- sibling %d of %d: %s, %s, %d bytes%s\n", i+1, len(siblings), s.ContentType, formatTime(s.LastModified), len(s.Value), form)
		value := string(s.Value)
		if !text {
			value = base64Encode(s.Value)
		}
		fmt.Fprint(w, value)
		if !strings.HasSuffix(value, "\n") {
			fmt.Fprintln(w)
		}
	}
}

func base64Encode(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// isText reports whether a value reads as text on a terminal: UTF-8 with no
// control characters but tab and line breaks.
func isText(b []byte) bool {
	if !utf8.Valid(b) {
		return false
	}
	for _, r := range string(b) {
		if unicode.IsControl(r) && r != '\n' && r != '\t' && r != '\r' {
			return false
		}
	}
	return true
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return "time unknown"
	}
	return t.UTC().Format(time.RFC3339)
}

// writeFlags are the flags put and delete share.
type writeFlags struct {
	w           *string
	token       *string
	contextFile *string
}

func (c *cli) writeFlagsOf(fs *flag.FlagSet) *writeFlags {
	return &writeFlags{
		w:           fs.String("w", "", "write quorum: a count, or one, quorum, all (default: the node's)"),
		token:       fs.String("context", "", "context token of an earlier read: the write supersedes what it saw"),
		contextFile: fs.String("context-file", "", "read the context token from this file when it exists and --context is not given, and write the new one there afterwards"),
	}
}

// options turns the flags into client options. A bad --w is a usage
// error; a context file that exists but cannot be read is an error.
func (f *writeFlags) options() (opts []client.WriteOption, usage, err error) {
	quorum, err := parseQuorum(*f.w)
	if err != nil {
		return nil, fmt.Errorf("--w: %w", err), nil
	}
	token := *f.token
	if token == "" && *f.contextFile != "" {
		data, err := os.ReadFile(*f.contextFile)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, nil, fmt.Errorf("context file: %w", err)
		}
		token = strings.TrimSpace(string(data))
	}
	return []client.WriteOption{client.W(quorum), client.CausalContext(token)}, nil, nil
}

// done writes the new context to the context file, if any.
func (f *writeFlags) done(token string) error {
	if *f.contextFile == "" {
		return nil
	}
	return writeContextFile(*f.contextFile, token)
}

func (c *cli) put(args []string) int {
	fs := c.newFlagSet("put", "[flags] KEY [VALUE | -]")
	common := c.common(fs)
	wf := c.writeFlagsOf(fs)
	contentType := fs.String("content-type", "", "the value's content type (default application/octet-stream)")
	file := fs.String("file", "", "read the value from this file")
	pos, exit, stop := parse(fs, args)
	if stop {
		return exit
	}
	if len(pos) < 1 || len(pos) > 2 {
		return c.usageError("put", "want KEY and at most one VALUE, got %d arguments", len(pos))
	}
	if len(pos) == 2 && *file != "" {
		return c.usageError("put", "give the value as an argument or with --file, not both")
	}
	opts, usage, err := wf.options()
	if usage != nil {
		return c.usageError("put", "%v", usage)
	}
	if err != nil {
		return c.fail("put", err)
	}
	var value []byte
	switch {
	case *file != "":
		value, err = os.ReadFile(*file)
	case len(pos) == 2 && pos[1] != "-":
		value = []byte(pos[1])
	default:
		value, err = io.ReadAll(c.stdin)
	}
	if err != nil {
		return c.fail("put", fmt.Errorf("reading the value: %w", err))
	}
	cl, err := common.newClient()
	if err != nil {
		return c.usageError("put", "--addr: %v", err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), common.timeout)
	defer cancel()
	token, err := cl.Put(ctx, pos[0], value, append(opts, client.ContentType(*contentType))...)
	if err != nil {
		return c.fail("put", err)
	}
	if err := wf.done(token); err != nil {
		return c.fail("put", err)
	}
	if common.verbose {
		fmt.Fprintf(c.stderr, "context: %s\n", token)
	}
	return exitOK
}

func (c *cli) delete(args []string) int {
	fs := c.newFlagSet("delete", "[flags] KEY")
	common := c.common(fs)
	wf := c.writeFlagsOf(fs)
	pos, exit, stop := parse(fs, args)
	if stop {
		return exit
	}
	if len(pos) != 1 {
		return c.usageError("delete", "want one KEY, got %d arguments", len(pos))
	}
	opts, usage, err := wf.options()
	if usage != nil {
		return c.usageError("delete", "%v", usage)
	}
	if err != nil {
		return c.fail("delete", err)
	}
	cl, err := common.newClient()
	if err != nil {
		return c.usageError("delete", "--addr: %v", err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), common.timeout)
	defer cancel()
	token, err := cl.Delete(ctx, pos[0], opts...)
	if err != nil {
		return c.fail("delete", err)
	}
	if err := wf.done(token); err != nil {
		return c.fail("delete", err)
	}
	if common.verbose {
		fmt.Fprintf(c.stderr, "context: %s\n", token)
	}
	return exitOK
}

func (c *cli) cluster(args []string) int {
	fs := c.newFlagSet("cluster", "[flags] [KEY]")
	common := c.common(fs)
	asJSON := fs.Bool("json", false, "print the node's answer as JSON")
	pos, exit, stop := parse(fs, args)
	if stop {
		return exit
	}
	if len(pos) > 1 {
		return c.usageError("cluster", "want at most one KEY, got %d arguments", len(pos))
	}
	cl, err := common.newClient()
	if err != nil {
		return c.usageError("cluster", "--addr: %v", err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), common.timeout)
	defer cancel()

	var answer any
	if len(pos) == 1 {
		answer, err = cl.KeyInfo(ctx, pos[0])
	} else {
		answer, err = cl.Cluster(ctx)
	}
	if err != nil {
		return c.fail("cluster", err)
	}
	if *asJSON {
		enc := json.NewEncoder(c.stdout)
		enc.SetIndent("", "  ")
		enc.Encode(answer) //nolint:errcheck // stdout
		return exitOK
	}
	switch a := answer.(type) {
	case *client.KeyInfo:
		fmt.Fprintf(c.stdout, "partition %d, replicas (coordinator first): %s\n", a.Partition, strings.Join(a.PreferenceList, ", "))
	case *client.ClusterInfo:
		fmt.Fprintf(c.stdout, "asked %s: N=%d R=%d W=%d, %d partitions\n\n", a.ID, a.N, a.R, a.W, a.Partitions)
		tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tADDR\tSTATE\tPARTITIONS\tIN TRANSFER\tHINTS")
		for _, m := range a.Members {
			state := m.State
			if m.Leaving {
				state += " (leaving)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\n", m.ID, m.Addr, state, m.Partitions, m.PartitionsInTransfer, m.HintsPending)
		}
		tw.Flush()
	}
	return exitOK
}

// writeContextFile replaces path with token and a newline, through a
// temporary file so a reader never sees half a token.
func writeContextFile(path, token string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("context file: %w", err)
	}
	_, werr := tmp.WriteString(token + "\n")
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("context file: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("context file: %w", err)
	}
	return nil
}
