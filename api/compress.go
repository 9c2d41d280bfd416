package api

import (
	"net/http"
	"strings"

	"github.com/klauspost/compress/gzhttp"
)

// compressMinBytes is the smallest body sent gzipped: below about one
// packet, compressing saves no round trip and costs CPU on both ends.
const compressMinBytes = 1 << 10

// compressResponses gzips the bodies of answers to clients that send
// Accept-Encoding: gzip, when the body is at least compressMinBytes and its
// Content-Type is not already compressed (images, video, archives: gzhttp's
// default filter). What it never touches: answers without a body (204, 304,
// HEAD), bodies that already carry a Content-Encoding (/metrics, where
// promhttp negotiates its own), and small answers. Every answer gets
// Vary: Accept-Encoding, so caches keep the two forms apart.
//
// A compressed body is a different representation of the same value, so
// its ETag is made weak (W/"..."), as nginx does. If-None-Match compares
// weakly (RFC 9110 §13.1.2), so either form of the tag revalidates; the 304,
// which has no body to encode, carries the strong tag, also as nginx does.
func compressResponses(next http.Handler) http.Handler {
	wrap, err := gzhttp.NewWrapper(
		gzhttp.MinSize(compressMinBytes),
		// Only gzip: every HTTP client decodes it, and one coding is one
		// behaviour to test. gzhttp can add zstd with EnableZstd(true).
		gzhttp.EnableZstd(false),
		// Never invent a Content-Type for an answer that has none.
		gzhttp.SetContentType(false),
	)
	if err != nil {
		panic("api: gzhttp options: " + err.Error()) // fixed options: cannot happen
	}
	gz := wrap(next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gz.ServeHTTP(&etagWriter{ResponseWriter: w}, r)
	})
}

// etagWriter sits under gzhttp, where the headers are final, and weakens a
// strong ETag on the way out when the body is encoded.
type etagWriter struct {
	http.ResponseWriter
	done bool // the final status has gone out
}

func (w *etagWriter) WriteHeader(code int) {
	w.finish(code)
	w.ResponseWriter.WriteHeader(code)
}

func (w *etagWriter) Write(b []byte) (int, error) {
	w.finish(http.StatusOK)
	return w.ResponseWriter.Write(b)
}

// FlushError is what http.ResponseController calls; a flush sends the
// headers, so they are finished first.
func (w *etagWriter) FlushError() error {
	w.finish(http.StatusOK)
	return http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *etagWriter) Flush() { _ = w.FlushError() }

func (w *etagWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *etagWriter) finish(code int) {
	if w.done || code < http.StatusOK { // 1xx: the final headers are still to come
		return
	}
	w.done = true
	h := w.Header()
	if etag := h.Get("ETag"); etag != "" && !strings.HasPrefix(etag, "W/") && h.Get("Content-Encoding") != "" {
		h.Set("ETag", "W/"+etag)
	}
}
