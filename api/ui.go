package api

import (
	"bytes"
	_ "embed"
	"fmt"
	"html/template"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/dynamo-kv/dynamo/node"
)

// uiSource is the page template; html/template escapes every value for its
// context, so member names cannot inject markup.
//
//go:embed ui.html
var uiSource string

// uiCSP is the page's Content-Security-Policy: everything it needs is
// inline, and it may only talk to the origin that served it.
const uiCSP = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'"

// uiStates are the member states the page counts, in the order it shows them.
var uiStates = []string{node.StateAlive, node.StateSuspect, node.StateDead, node.StateLeft}

// uiFuncs format the numeric cells. The page's script formats the values of
// each refresh with its own copies of these (fmt in ui.html); the two must
// agree, which the browser test in this package checks.
var uiFuncs = template.FuncMap{
	"bytes":   formatBytes,
	"rate":    formatRate,
	"latency": formatLatency,
	"num":     func(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) },
}

// parseUI parses the page; it fails only if ui.html is broken, which the
// tests catch.
func parseUI() *template.Template {
	return template.Must(template.New("ui").Funcs(uiFuncs).Parse(uiSource))
}

// uiView is what ui.html renders.
type uiView struct {
	node.ClusterInfo
	Rows     []uiRow
	Counts   []uiCount // one per state of uiStates, zeros included
	Blank    uiRow     // the empty row the script clones
	Rendered time.Time // UTC
}

// uiRow is one member's row; Self marks the node serving the page.
type uiRow struct {
	node.MemberInfo
	Self bool
}

type uiCount struct {
	State string
	Count int
}

func newUIView(info node.ClusterInfo, now time.Time) uiView {
	v := uiView{ClusterInfo: info, Rendered: now.UTC()}
	counts := map[string]int{}
	for _, m := range info.Members {
		v.Rows = append(v.Rows, uiRow{MemberInfo: m, Self: m.ID == info.ID})
		counts[m.State]++
	}
	for _, s := range uiStates {
		v.Counts = append(v.Counts, uiCount{State: s, Count: counts[s]})
	}
	return v
}

// ui is GET /ui: the cluster page for people. It is rendered with this node's
// view and then refreshes itself from GET /cluster every two seconds.
func (s *server) ui(w http.ResponseWriter, r *http.Request) {
	var buf bytes.Buffer
	if err := s.uiPage.Execute(&buf, newUIView(s.svc.Cluster(), time.Now())); err != nil {
		s.fail(w, r, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Content-Security-Policy", uiCSP)
	w.Write(buf.Bytes()) //nolint:errcheck // the client may be gone
}

// tenths writes x >= 0 rounded to one decimal, rounding halves up, as the
// script's Math.round does; fmt's %.1f would round them to even.
func tenths(x float64) string {
	t := int64(math.Round(x * 10))
	return fmt.Sprintf("%d.%d", t/10, t%10)
}

// formatBytes is b in bytes below 1 KiB, else in the largest binary unit
// that keeps the number at 1 or more, to one decimal: "120.6 KiB".
func formatBytes(b int64) string {
	if b < 1024 {
		return strconv.FormatInt(b, 10) + " B"
	}
	units := []string{"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	i, unit := 0, 1024.0
	for i < len(units)-1 && float64(b) >= unit*1024 {
		unit *= 1024
		i++
	}
	return tenths(float64(b)/unit) + " " + units[i]
}

// formatRate is requests per second to one decimal.
func formatRate(r float64) string { return tenths(r) }

// formatLatency is a duration in seconds in µs, ms or s; an en dash when it
// is not positive, which means no requests were measured.
func formatLatency(s float64) string {
	if !(s > 0) {
		return "\u2013"
	}
	us := math.Round(s * 1e6)
	switch {
	case us < 1000:
		return strconv.FormatInt(int64(us), 10) + " \u00b5s"
	case us < 1e6:
		return tenths(us/1000) + " ms"
	default:
		return tenths(s) + " s"
	}
}
