package main

import (
	"bytes"
	"encoding/json"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dynamo-kv/dynamo/api"
	"github.com/dynamo-kv/dynamo/node/nodetest"
)

// cliNode serves the client API of the first node of an in-process cluster
// of three and returns its address.
func cliNode(t *testing.T) string {
	t.Helper()
	c := nodetest.MakeCluster(t, 3, nodetest.DefaultConfig())
	srv := httptest.NewServer(api.New(c.Node(c.IDs()[0]), api.Options{}))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// cliRun is the outcome of one command.
type cliRun struct {
	code           int
	stdout, stderr string
}

// dynamo runs `dynamo args...` with stdin and DYNAMO_ADDR=addr.
func dynamo(t *testing.T, addr, stdin string, args ...string) cliRun {
	t.Helper()
	if !isCLICommand(args[0]) {
		t.Fatalf("%q is not a client command", args[0])
	}
	var out, errOut bytes.Buffer
	env := func(k string) string {
		if k == "DYNAMO_ADDR" {
			return addr
		}
		return ""
	}
	code := runCLI(args, env, strings.NewReader(stdin), &out, &errOut)
	return cliRun{code, out.String(), errOut.String()}
}

func (r cliRun) want(t *testing.T, code int, stdout string) {
	t.Helper()
	if r.code != code || r.stdout != stdout {
		t.Fatalf("exit %d, stdout %q (stderr %q); want exit %d, stdout %q", r.code, r.stdout, r.stderr, code, stdout)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func TestCLIPutGet(t *testing.T) {
	addr := cliNode(t)
	dynamo(t, addr, "", "put", "--content-type=text/plain", "greeting", "hello").want(t, 0, "")
	dynamo(t, addr, "", "get", "greeting").want(t, 0, "hello")
	// Flags after the arguments, and the address as a flag.
	dynamo(t, "127.0.0.1:1", "", "get", "greeting", "--addr="+addr).want(t, 0, "hello")
	// -v tells the context and content type on stderr.
	r := dynamo(t, addr, "", "get", "-v", "greeting")
	if r.code != 0 || !strings.Contains(r.stderr, "content-type: text/plain") || !strings.Contains(r.stderr, "context: ") {
		t.Fatalf("get -v: %+v", r)
	}
	// Values from standard input, "-", and a file.
	dynamo(t, addr, "from stdin", "put", "a").want(t, 0, "")
	dynamo(t, addr, "", "get", "a").want(t, 0, "from stdin")
	dynamo(t, addr, "dash", "put", "b", "-").want(t, 0, "")
	dynamo(t, addr, "", "get", "b").want(t, 0, "dash")
	file := filepath.Join(t.TempDir(), "value")
	os.WriteFile(file, []byte("\x00binary\xff"), 0o600)
	dynamo(t, addr, "", "put", "--file", file, "c").want(t, 0, "")
	dynamo(t, addr, "", "get", "c").want(t, 0, "\x00binary\xff")
	// A key that starts with a dash, after --.
	dynamo(t, addr, "", "put", "--", "-k", "dashed").want(t, 0, "")
	dynamo(t, addr, "", "get", "--", "-k").want(t, 0, "dashed")
}

// Siblings print readably; the context file chains a read into the write
// that resolves them, then into a delete.
func TestCLISiblingsAndContextFile(t *testing.T) {
	addr := cliNode(t)
	ctxFile := filepath.Join(t.TempDir(), "ctx")
	dynamo(t, addr, "", "put", "--content-type=text/plain", "color", "blue").want(t, 0, "")
	dynamo(t, addr, "", "put", "color", "\x00\x01").want(t, 0, "") // binary, concurrent

	r := dynamo(t, addr, "", "get", "--context-file", ctxFile, "color")
	if r.code != 0 {
		t.Fatalf("get: %+v", r)
	}
	for _, want := range []string{
		"2 siblings",
		"--- sibling 1 of 2: text/plain, ", ", 4 bytes\nblue\n",
		"--- sibling 2 of 2: application/octet-stream, ", ", 2 bytes, base64\nAAE=\n",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Fatalf("siblings output lacks %q:\n%s", want, r.stdout)
		}
	}
	token := strings.TrimSpace(readFile(t, ctxFile))
	if token == "" {
		t.Fatal("get wrote no context")
	}

	dynamo(t, addr, "", "put", "--context-file", ctxFile, "color", "teal").want(t, 0, "")
	dynamo(t, addr, "", "get", "color").want(t, 0, "teal")
	if next := strings.TrimSpace(readFile(t, ctxFile)); next == "" || next == token {
		t.Fatalf("put left the context file at %q (was %q)", next, token)
	}

	dynamo(t, addr, "", "delete", "--context-file", ctxFile, "color").want(t, 0, "")
	tomb := strings.TrimSpace(readFile(t, ctxFile))
	r = dynamo(t, addr, "", "get", "--context-file", ctxFile, "color")
	if r.code != exitNotFound || r.stdout != "" || !strings.Contains(r.stderr, "not found") {
		t.Fatalf("get of a deleted key: %+v", r)
	}
	if got := strings.TrimSpace(readFile(t, ctxFile)); got == "" || got != tomb {
		t.Fatalf("context file after a 404 with history: %q, want the tombstone's %q", got, tomb)
	}
	// A key never written: exit 3 and an empty context file, so a stale
	// token is never sent with the next write.
	r = dynamo(t, addr, "", "get", "--context-file", ctxFile, "never")
	if r.code != exitNotFound || readFile(t, ctxFile) != "\n" {
		t.Fatalf("get of a missing key: %+v, context file %q", r, readFile(t, ctxFile))
	}

	// --context passes a token directly.
	dynamo(t, addr, "", "put", "k", "one").want(t, 0, "")
	r = dynamo(t, addr, "", "get", "-v", "k")
	tok := strings.TrimSpace(strings.TrimPrefix(strings.Split(r.stderr, "\n")[0], "context:"))
	dynamo(t, addr, "", "put", "--context="+tok, "k", "two").want(t, 0, "")
	dynamo(t, addr, "", "get", "k").want(t, 0, "two")
}

func TestCLIJSON(t *testing.T) {
	addr := cliNode(t)
	dynamo(t, addr, "", "put", "--content-type=text/plain", "k", "a").want(t, 0, "")
	dynamo(t, addr, "", "put", "k", "b").want(t, 0, "")
	r := dynamo(t, addr, "", "get", "--json", "k")
	var doc struct {
		Context  string `json:"context"`
		Siblings []struct {
			ContentType  string `json:"content_type"`
			Value        []byte `json:"value"`
			LastModified string `json:"last_modified"`
		} `json:"siblings"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil || r.code != 0 {
		t.Fatalf("get --json: %+v: %v", r, err)
	}
	if doc.Context == "" || len(doc.Siblings) != 2 || string(doc.Siblings[0].Value) != "a" || doc.Siblings[0].ContentType != "text/plain" || doc.Siblings[0].LastModified == "" {
		t.Fatalf("document %+v", doc)
	}
	r = dynamo(t, addr, "", "get", "--json", "missing")
	if r.code != exitNotFound || !strings.Contains(r.stdout, `"siblings": []`) {
		t.Fatalf("get --json of a missing key: %+v", r)
	}
}

func TestCLICluster(t *testing.T) {
	addr := cliNode(t)
	r := dynamo(t, addr, "", "cluster")
	if r.code != 0 || !strings.Contains(r.stdout, "N=3 R=2 W=2") || strings.Count(r.stdout, " alive ") != 3 {
		t.Fatalf("cluster: %+v", r)
	}
	r = dynamo(t, addr, "", "cluster", "some/key")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "partition ") || strings.Count(r.stdout, "node-") != 3 {
		t.Fatalf("cluster KEY: %+v", r)
	}
	r = dynamo(t, addr, "", "cluster", "--json")
	var info struct {
		N       int `json:"n"`
		Members []struct {
			ID string `json:"id"`
		} `json:"members"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &info); err != nil || info.N != 3 || len(info.Members) != 3 {
		t.Fatalf("cluster --json: %+v: %v", r, err)
	}
}

func TestCLIUsageAndErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	for _, tt := range []struct {
		args []string
		code int
	}{
		{[]string{"get"}, exitUsage},
		{[]string{"get", "a", "b"}, exitUsage},
		{[]string{"get", "--r=some", "k"}, exitUsage},
		{[]string{"get", "--nonsense", "k"}, exitUsage},
		{[]string{"put"}, exitUsage},
		{[]string{"put", "k", "v", "w"}, exitUsage},
		{[]string{"put", "--file=x", "k", "v"}, exitUsage},
		{[]string{"put", "--w=0", "k", "v"}, exitUsage},
		{[]string{"delete"}, exitUsage},
		{[]string{"delete", "--w=x", "k"}, exitUsage},
		{[]string{"cluster", "a", "b"}, exitUsage},
		{[]string{"get", "--addr=", "k"}, exitUsage},
		{[]string{"get", "--addr=no-port", "k"}, exitUsage},
		{[]string{"get", "--help"}, exitOK},
		{[]string{"help"}, exitOK},
		{[]string{"get", "k"}, exitError}, // nobody answers
		{[]string{"put", "--file=/nonexistent/x", "k"}, exitError},
	} {
		if r := dynamo(t, dead, "", tt.args...); r.code != tt.code {
			t.Errorf("dynamo %q: exit %d, want %d (stderr %q)", tt.args, r.code, tt.code, r.stderr)
		}
	}
	if r := dynamo(t, dead, "", "help"); !strings.Contains(r.stdout, "dynamo get") || !strings.Contains(r.stdout, "3 not found") {
		t.Fatalf("help: %q", r.stdout)
	}
	// Node flags and no arguments still start a node.
	for _, arg := range []string{"--id=x", "-listen=:1", "probe", ""} {
		if isCLICommand(arg) {
			t.Errorf("%q is taken for a client command", arg)
		}
	}
}
