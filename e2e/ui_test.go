package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"html"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The browser test's knobs, all environment variables:
//   - DYNAMO_REQUIRE_BROWSER=1 fails the test when no Chromium is found,
//     instead of skipping it (CI sets it).
//   - DYNAMO_ARTIFACTS is where the screenshots go; a temporary directory
//     when unset.
//   - DYNAMO_UPDATE_SCREENSHOT=1 also copies the final screenshot to
//     docs/cluster-page.png, the README's.
const (
	requireBrowserEnv   = "DYNAMO_REQUIRE_BROWSER"
	artifactsEnv        = "DYNAMO_ARTIFACTS"
	updateScreenshotEnv = "DYNAMO_UPDATE_SCREENSHOT"
)

// TestUIShowsMemberDying loads GET /ui of a 3-node cluster in headless
// Chromium: every member is listed alive, with no console message. Then node
// 2 is killed with SIGKILL, and the page, as the browser renders it after its
// own refresh from GET /cluster, must come to show n2 dead.
func TestUIShowsMemberDying(t *testing.T) {
	start := time.Now()
	bin := findBrowser(t)
	artifacts := artifactsDir(t)
	c := startCluster(t, 3)
	t.Logf("cluster of 3 ready after %v", time.Since(start).Round(time.Millisecond))
	url := "http://" + c.nodes[0].listen + "/ui"

	page := loadPage(t, bin, url, filepath.Join(artifacts, "cluster-page-alive.png"))
	if got, want := page.states(), "n0=alive n1=alive n2=alive"; got != want {
		t.Fatalf("the page lists %q, want %q", got, want)
	}
	for _, want := range []string{`id="node-id">n0<`, `id="member-count">3<`, `id="count-alive" class="alive"><span data-count="">3<`} {
		if !strings.Contains(page.dom, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	t.Logf("page lists 3 alive members after %v", time.Since(start).Round(time.Millisecond))

	c.kill9(t, 2)
	killed := time.Now()
	final := filepath.Join(artifacts, "cluster-page.png")
	runs := 0
	waitFor(t, 30*time.Second, "the page shows n2 dead", func() error {
		runs++
		page := loadPage(t, bin, url, final)
		if got, want := page.states(), "n0=alive n1=alive n2=dead"; got != want {
			return fmt.Errorf("the page lists %q, want %q", got, want)
		}
		return nil
	})
	t.Logf("page shows n2 dead %v after the kill (%d browser runs); screenshot %s",
		time.Since(killed).Round(time.Millisecond), runs, final)

	if os.Getenv(updateScreenshotEnv) == "1" {
		png, err := os.ReadFile(final)
		if err != nil {
			t.Fatal(err)
		}
		// The test runs in e2e/; the README's image is at the module root.
		docs := filepath.Join("..", "docs", "cluster-page.png")
		if err := os.MkdirAll(filepath.Dir(docs), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(docs, png, 0o644); err != nil {
			t.Fatal(err)
		}
		abs, _ := filepath.Abs(docs)
		t.Logf("%s=1: screenshot copied to %s", updateScreenshotEnv, abs)
	}
}

// artifactsDir is $DYNAMO_ARTIFACTS, created if need be, or a temporary
// directory.
func artifactsDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv(artifactsEnv)
	if dir == "" {
		dir = t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshots go to %s (set %s to keep them elsewhere)", dir, artifactsEnv)
	return dir
}

// renderedPage is the DOM of the cluster page after its script ran.
type renderedPage struct{ dom string }

var (
	membersPattern   = regexp.MustCompile(`(?s)<tbody id="members">(.*?)</tbody>`)
	memberRowPattern = regexp.MustCompile(`<tr data-member="([^"]*)" data-state="([^"]*)"`)
)

// states lists the members of the page's table as "id=state", sorted (the
// page keeps the order of GET /cluster, which is the order of joining).
func (p renderedPage) states() string {
	table := membersPattern.FindStringSubmatch(p.dom)
	if table == nil {
		return "no members table"
	}
	var s []string
	for _, m := range memberRowPattern.FindAllStringSubmatch(table[1], -1) {
		s = append(s, html.UnescapeString(m[1])+"="+html.UnescapeString(m[2]))
	}
	slices.Sort(s)
	return strings.Join(s, " ")
}

// loadPage loads url in the browser, lets the page refresh itself once, saves
// a screenshot of it to png and returns its DOM. It fails t on any console
// message and when the refresh did not succeed, so that what the caller
// checks is the script's rendering of GET /cluster, not the server's first
// paint.
func loadPage(t *testing.T, bin, url, png string) renderedPage {
	t.Helper()
	// The script refreshes 2 s after the load and then every 2 s; virtual
	// time does not count while the request is in flight.
	dom, console := runBrowser(t, bin, 3*time.Second, url,
		"--dump-dom", "--screenshot="+png, "--window-size=1280,800", "--hide-scrollbars")
	if len(console) > 0 {
		t.Fatalf("console messages on %s:\n%s", url, strings.Join(console, "\n"))
	}
	if !strings.Contains(dom, `<p id="status" data-status="live">`) {
		t.Fatalf("the page did not refresh itself from /cluster; DOM:\n%s", dom)
	}
	if info, err := os.Stat(png); err != nil || info.Size() == 0 {
		t.Fatalf("no screenshot at %s: %v", png, err)
	}
	return renderedPage{dom: dom}
}

// findBrowser returns the path of a Chromium or Chrome binary, skipping the
// test when there is none, or failing it when DYNAMO_REQUIRE_BROWSER=1.
func findBrowser(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test: skipped with -short")
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	msg := "no headless browser: none of chromium, chromium-browser, google-chrome is on PATH (Debian: apt-get install chromium)"
	if os.Getenv(requireBrowserEnv) == "1" {
		t.Fatal(msg + "; " + requireBrowserEnv + "=1 asks for one")
	}
	t.Skip(msg + "; set " + requireBrowserEnv + "=1 to fail instead")
	return ""
}

// consolePattern matches the lines Chromium writes to stderr (with
// --enable-logging=stderr) for the page's console: every console call,
// uncaught exception and CSP violation, as
// `[...:INFO:CONSOLE:12] "message", source: url (12)` (older versions:
// "CONSOLE(12)"). Chromium logs them all at INFO whatever their level, so
// the page must log nothing at all.
var consolePattern = regexp.MustCompile(`\bCONSOLE\b|Uncaught`)

// runBrowser loads url in headless Chromium with a fresh profile, lets
// budget of virtual time pass (timers run; network waits do not count), then
// does what args ask (--dump-dom, --screenshot=...). It returns stdout and
// the console lines of stderr.
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
	// Its own process group, so that no helper process outlives the run.
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
