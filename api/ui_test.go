package api

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"html"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dynamo-kv/dynamo/node"
)

// hostileIDs are member ids that would be markup, attributes or script if
// the page did not escape them.
var hostileIDs = []string{
	`node-<c>`,
	`"><script>document.title="pwned"</script>`,
	`' onmouseover='document.title=1`,
	`<img src=x onerror="document.title=2">`,
	`a&amp;b`,
}

func TestUI(t *testing.T) {
	h := newHarness(t)
	rec := h.do(http.MethodGet, "/ui", "")
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d, body %s", rec.Code, rec.Body)
	}
	for name, want := range map[string]string{
		"Content-Type":            "text/html; charset=utf-8",
		"Content-Security-Policy": "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'",
		"Cache-Control":           "no-store",
		"X-Content-Type-Options":  "nosniff",
		"Content-Length":          strconv.Itoa(rec.Body.Len()),
	} {
		if got := rec.Header().Get(name); got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
	page := rec.Body.String()

	// The fake's three members, each with its state; node-b hands off.
	wantRows(t, page, []string{
		`node-a state=alive leaving=false class=state-alive self=true badge=false | id=node-a state=alive partitions=5[5] ` +
			`partitions_in_transfer=2[2] bytes_moved=120.6 KiB[123456] hints_pending=0[0] requests_per_second=0.0[0] ` +
			`p99_seconds=–[0] addr=10.0.0.1:8080 peer_addr=10.0.0.1:8081 gossip_addr=10.0.0.1:7946`,
		`node-b state=suspect leaving=true class=state-suspect self=false badge=true | id=node-b state=suspect partitions=3[3] ` +
			`partitions_in_transfer=0[0] bytes_moved=0 B[0] hints_pending=0[0] requests_per_second=0.0[0] ` +
			`p99_seconds=–[0] addr=10.0.0.2:8080 peer_addr=10.0.0.2:8081 gossip_addr=10.0.0.2:7946`,
		`node-<c> state=dead leaving=false class=state-dead self=false badge=false | id=node-<c> state=dead partitions=0[0] ` +
			`partitions_in_transfer=0[0] bytes_moved=0 B[0] hints_pending=0[0] requests_per_second=0.0[0] ` +
			`p99_seconds=–[0] addr=10.0.0.3:8080 peer_addr=10.0.0.3:8081 gossip_addr=10.0.0.3:7946`,
	})
	for _, want := range []string{
		`id="node-id">node-a<`,
		`id="n">3<`, `id="r">2<`, `id="w">2<`, `id="partitions">8<`, `id="member-count">3<`,
		`id="count-alive" class="alive"><span data-count>1<`,
		`id="count-suspect" class="suspect"><span data-count>1<`,
		`id="count-dead" class="dead"><span data-count>1<`,
		`id="count-left" class="left zero"><span data-count>0<`,
		`<p id="status" data-status="served">`,
		`<p id="notice" role="alert" hidden></p>`,
		`<caption>`, `<th scope="col">state</th>`, `<th scope="row">`,
		`fetch("cluster"`, "setTimeout(refresh, period)", "var period = 2000;",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	// Everything is inline: nothing for the CSP to block, nothing to fetch
	// but /cluster.
	for _, external := range []string{"http://", "https://", "src=", "<link", "url(", "@import"} {
		if strings.Contains(page, external) {
			t.Errorf("page references an external asset (%q)", external)
		}
	}
}

func TestUIRendersEveryMember(t *testing.T) {
	for _, size := range []int{0, 1, 100} {
		t.Run(strconv.Itoa(size), func(t *testing.T) {
			h := newHarness(t)
			info := bigCluster(size)
			h.svc.set(func(f *fakeService) { f.cluster = info })
			page := h.do(http.MethodGet, "/ui", "").Body.String()
			rows := uiRows(t, page)
			if len(rows) != size {
				t.Fatalf("%d rows for %d members", len(rows), size)
			}
			for i, m := range info.Members {
				prefix := fmt.Sprintf("%s state=%s ", m.ID, m.State)
				if !strings.HasPrefix(rows[i], prefix) {
					t.Fatalf("row %d is %q, want it to start with %q", i, rows[i], prefix)
				}
			}
			if !strings.Contains(page, fmt.Sprintf(`id="member-count">%d<`, size)) {
				t.Errorf("member count is not %d", size)
			}
		})
	}
}

func TestUIEscapesMemberIDs(t *testing.T) {
	h := newHarness(t)
	h.svc.set(func(f *fakeService) {
		f.cluster.ID = hostileIDs[1]
		for _, id := range hostileIDs {
			f.cluster.Members = append(f.cluster.Members, node.MemberInfo{ID: id, Addr: id, State: node.StateAlive})
		}
	})
	page := h.do(http.MethodGet, "/ui", "").Body.String()
	for _, id := range hostileIDs[1:] {
		if strings.Contains(page, id) {
			t.Errorf("member id %q appears unescaped", id)
		}
	}
	if n := strings.Count(page, "<script"); n != 1 {
		t.Errorf("%d <script elements, want only the page's own", n)
	}
	if strings.Contains(page, "<img") {
		t.Error("a member id became an <img> element")
	}
	// Escaped, the ids read back exactly, as text and as attributes.
	rows := uiRows(t, page)
	for i, id := range hostileIDs {
		row := rows[len(rows)-len(hostileIDs)+i]
		if !strings.HasPrefix(row, id+" state=alive ") || !strings.Contains(row, " | id="+id+" state=") {
			t.Errorf("row %q does not carry the id %q", row, id)
		}
	}
	if !strings.Contains(page, "<title>dynamo · &#34;&gt;&lt;script&gt;") {
		t.Error("the serving node's id is not escaped in the title")
	}
}

func TestUIFormats(t *testing.T) {
	for _, tc := range []struct {
		got, want string
	}{
		{formatBytes(0), "0 B"},
		{formatBytes(1023), "1023 B"},
		{formatBytes(1024), "1.0 KiB"},
		{formatBytes(1280), "1.3 KiB"}, // halves round up, as in the script
		{formatBytes(123456), "120.6 KiB"},
		{formatBytes(1 << 20), "1.0 MiB"},
		{formatBytes(5<<30 + 1<<29), "5.5 GiB"},
		{formatBytes(1 << 62), "4.0 EiB"},
		{formatRate(0), "0.0"},
		{formatRate(0.05), "0.1"},
		{formatRate(1234.56), "1234.6"},
		{formatLatency(0), "–"},
		{formatLatency(-1), "–"},
		{formatLatency(0.00085), "850 µs"},
		{formatLatency(0.0125), "12.5 ms"},
		{formatLatency(0.99996), "1000.0 ms"},
		{formatLatency(2.5), "2.5 s"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

// bigCluster is a cluster of size members in every state, with numbers that
// cross each formatting threshold and the hostile ids among them.
func bigCluster(size int) node.ClusterInfo {
	states := []string{node.StateAlive, node.StateAlive, node.StateSuspect, node.StateDead, node.StateLeft}
	bytes := []int64{0, 1023, 1024, 1280, 123456, 5<<30 + 1<<29}
	rates := []float64{0, 0.05, 3.14159, 1234.56}
	p99s := []float64{0, 0.00085, 0.0125, 0.99996, 2.5}
	info := node.ClusterInfo{ID: "m002", N: 3, R: 1, W: 3, Partitions: 64}
	for i := range size {
		id := fmt.Sprintf("m%03d", i)
		if i%20 == 7 {
			id = hostileIDs[(i/20)%len(hostileIDs)]
		}
		info.Members = append(info.Members, node.MemberInfo{
			ID:                   id,
			Addr:                 fmt.Sprintf("10.1.%d.%d:8080", i/250, i%250),
			PeerAddr:             fmt.Sprintf("10.1.%d.%d:8081", i/250, i%250),
			GossipAddr:           fmt.Sprintf("10.1.%d.%d:7946", i/250, i%250),
			State:                states[i%len(states)],
			Leaving:              i%9 == 4,
			Partitions:           i % 17,
			PartitionsInTransfer: i % 3,
			BytesMoved:           bytes[i%len(bytes)],
			HintsPending:         i * 11 % 7,
			RequestsPerSecond:    rates[i%len(rates)],
			P99Seconds:           p99s[i%len(p99s)],
		})
	}
	return info
}

// The patterns uiRows reads the members table with. They fit both the
// server's markup and Chromium's serialisation of the DOM, and rely on
// what ui.html promises: one <tr> per member with data-member, data-state
// and data-leaving, and elements with data-field holding only text.
var (
	uiBodyPattern  = regexp.MustCompile(`(?s)<tbody id="members">(.*?)</tbody>`)
	uiRowPattern   = regexp.MustCompile(`(?s)<tr\b([^>]*)>(.*?)</tr>`)
	uiAttrPattern  = regexp.MustCompile(`([\w-]+)(?:="([^"]*)")?`)
	uiFieldPattern = regexp.MustCompile(`<(?:td|span)\b([^>]*\bdata-field="[^"]*"[^>]*)>([^<]*)<`)
	uiSpanPattern  = regexp.MustCompile(`<span class="(self|badge leaving)"([^>]*)>`)
)

// uiRows returns each row of the page's members table as one line: the
// row's attributes, whether the "this node" and "leaving" marks show, then
// every data-field cell as field=text[data-value], all unescaped.
func uiRows(t *testing.T, page string) []string {
	t.Helper()
	body := uiBodyPattern.FindStringSubmatch(page)
	if body == nil {
		t.Fatalf("no members table in %q", page)
	}
	var rows []string
	for _, tr := range uiRowPattern.FindAllStringSubmatch(body[1], -1) {
		a := uiAttrs(tr[1])
		marks := map[string]bool{}
		for _, s := range uiSpanPattern.FindAllStringSubmatch(tr[2], -1) {
			marks[s[1]] = !uiAttrs(s[2]).has("hidden")
		}
		line := fmt.Sprintf("%s state=%s leaving=%s class=%s self=%t badge=%t |",
			a["data-member"], a["data-state"], a["data-leaving"], a["class"], marks["self"], marks["badge leaving"])
		for _, f := range uiFieldPattern.FindAllStringSubmatch(tr[2], -1) {
			fa := uiAttrs(f[1])
			line += " " + fa["data-field"] + "=" + strings.TrimSpace(html.UnescapeString(f[2]))
			if v, ok := fa["data-value"]; ok {
				// The server writes Go's shortest decimal, the script
				// JavaScript's; compare the numbers.
				if n, err := strconv.ParseFloat(v, 64); err == nil {
					v = strconv.FormatFloat(n, 'g', -1, 64)
				}
				line += "[" + v + "]"
			}
		}
		rows = append(rows, line)
	}
	return rows
}

type attrs map[string]string

func (a attrs) has(name string) bool { _, ok := a[name]; return ok }

func uiAttrs(s string) attrs {
	a := attrs{}
	for _, m := range uiAttrPattern.FindAllStringSubmatch(s, -1) {
		a[m[1]] = html.UnescapeString(m[2])
	}
	return a
}

func wantRows(t *testing.T, page string, want []string) {
	t.Helper()
	got := uiRows(t, page)
	if len(got) != len(want) {
		t.Fatalf("%d rows, want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
	}
	bad := 0
	for i := range got {
		if got[i] == want[i] {
			continue
		}
		if bad++; bad <= 3 {
			t.Errorf("row %d:\n got %s\nwant %s", i, got[i], want[i])
		}
	}
	if bad > 3 {
		t.Errorf("and %d more rows differ", bad-3)
	}
}

// TestUIScriptInBrowser runs the page's script in headless Chromium against
// a fake node whose /cluster answer changes after the page was served: what
// the script renders from /cluster must be what the server renders from the
// same data (hostile ids included), and a failed refresh must show a notice
// and keep the last rows, all without a console message.
func TestUIScriptInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test: skipped with -short")
	}
	bin := findBrowser(t)
	next := bigCluster(100)

	for _, tc := range []struct {
		name    string
		cluster func(h *harness, w http.ResponseWriter, r *http.Request) // serves GET /cluster
		check   func(t *testing.T, h *harness, dom string)
	}{
		{
			name: "refresh",
			cluster: func(h *harness, w http.ResponseWriter, r *http.Request) {
				h.svc.set(func(f *fakeService) { f.cluster = next })
				h.h.ServeHTTP(w, r)
			},
			check: func(t *testing.T, h *harness, dom string) {
				wantRows(t, dom, uiRows(t, h.do(http.MethodGet, "/ui", "").Body.String()))
				for _, want := range []string{
					`id="node-id">m002<`, `id="n">3<`, `id="r">1<`, `id="w">3<`, `id="partitions">64<`,
					`id="member-count">100<`, `data-status="live"`, `<p id="notice" role="alert" hidden="">`,
					`<table id="members-table">`, `id="count-left" class="left"><span data-count="">20<`,
					`<title>dynamo · m002</title>`,
				} {
					if !strings.Contains(dom, want) {
						t.Errorf("DOM lacks %q", want)
					}
				}
			},
		},
		{
			name: "error answer",
			cluster: func(h *harness, w http.ResponseWriter, r *http.Request) {
				h.svc.set(func(f *fakeService) { f.panics = true })
				h.h.ServeHTTP(w, r)
			},
			check: func(t *testing.T, h *harness, dom string) {
				wantStale(t, h, dom, "internal error (HTTP 500)")
			},
		},
		{
			name: "node gone",
			cluster: func(h *harness, w http.ResponseWriter, r *http.Request) {
				conn, _, err := http.NewResponseController(w).Hijack()
				if err == nil {
					conn.Close()
				}
			},
			check: func(t *testing.T, h *harness, dom string) {
				wantStale(t, h, dom, "the node did not answer (Failed to fetch)")
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/cluster" {
					tc.cluster(h, w, r)
					return
				}
				h.h.ServeHTTP(w, r)
			}))
			defer srv.Close()
			// One refresh: it is due 2 s after the load, the next 2 s later.
			dom, console := runBrowser(t, bin, 3*time.Second, srv.URL+"/ui", "--dump-dom")
			if len(console) > 0 {
				t.Errorf("console messages:\n%s", strings.Join(console, "\n"))
			}
			tc.check(t, h, dom)
		})
	}
}

// wantStale checks that dom shows a failed refresh: the notice with why, and
// the members as first served.
func wantStale(t *testing.T, h *harness, dom, why string) {
	t.Helper()
	h.svc.set(func(f *fakeService) { f.panics = false })
	wantRows(t, dom, uiRows(t, h.do(http.MethodGet, "/ui", "").Body.String()))
	for _, want := range []string{
		`data-status="failed"`, `<table id="members-table" class="stale">`, `<title>⚠ dynamo · node-a</title>`,
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("DOM lacks %q", want)
		}
	}
	notice := regexp.MustCompile(`<p id="notice" role="alert">Refresh failed: ([^<]*)\. Showing the cluster as of`).FindStringSubmatch(dom)
	if notice == nil || html.UnescapeString(notice[1]) != why {
		t.Errorf("notice %q, want one saying %q", notice, why)
	}
}

// browserEnv makes a missing browser fail the browser tests rather than
// skip them.
const browserEnv = "DYNAMO_REQUIRE_BROWSER"

// findBrowser returns the path of a Chromium or Chrome binary, skipping the
// test when there is none (failing it when DYNAMO_REQUIRE_BROWSER=1).
func findBrowser(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	msg := "no headless browser: none of chromium, chromium-browser, google-chrome is on PATH (Debian: apt-get install chromium)"
	if os.Getenv(browserEnv) == "1" {
		t.Fatal(msg + "; " + browserEnv + "=1 asks for one")
	}
	t.Skip(msg + "; set " + browserEnv + "=1 to fail instead")
	return ""
}

// consolePattern matches the lines Chromium writes to stderr for the page's
// console: every console call, uncaught exception and CSP violation, as
// "[...:INFO:CONSOLE:12] "message", source: url (12)" (older versions:
// "CONSOLE(12)"). Chromium logs all of them at INFO, whatever their level,
// so the page must log nothing at all.
var consolePattern = regexp.MustCompile(`\bCONSOLE\b|Uncaught`)

// runBrowser loads url in headless Chromium, lets budget of virtual time
// pass (timers run, network waits do not count), then does what args say
// (--dump-dom, --screenshot=...). It returns stdout and the console lines.
func runBrowser(t *testing.T, bin string, budget time.Duration, url string, args ...string) (string, []string) {
	t.Helper()
	profile, err := os.MkdirTemp("", "dynamo-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(profile)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args = append([]string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--no-first-run", "--no-default-browser-check", "--user-data-dir=" + profile,
		"--enable-logging=stderr", "--v=0",
		fmt.Sprintf("--virtual-time-budget=%d", budget.Milliseconds()),
	}, append(args, url)...)
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// Its own process group, so that no helper process outlives the test.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	err = cmd.Run()
	if cmd.Process != nil {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", bin, strings.Join(args, " "), err, stderr.Bytes())
	}
	var console []string
	sc := bufio.NewScanner(&stderr)
	for sc.Scan() {
		if consolePattern.MatchString(sc.Text()) {
			console = append(console, sc.Text())
		}
	}
	return stdout.String(), console
}
