package api

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/dynamo-kv/dynamo/node"
	"github.com/dynamo-kv/dynamo/replication/version"
)

const keysPrefix = "/keys/"

// putKey is PUT /keys/{key}: store the body, answer 204 with the new
// version's context (and the sibling headers when the key has siblings), or
// 409 when the write would leave too many siblings.
func (s *server) putKey(w http.ResponseWriter, r *http.Request) {
	key, quorum, clock, hasContext, err := s.parseWrite(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	value, err := readValue(w, r, s.maxValueBytes)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	contentType := r.Header.Get("Content-Type")
	if contentType == "" {
		contentType = defaultContentType
	}
	written, err := s.svc.PutVersion(r.Context(), node.PutRequest{
		Key: key, Value: value, ContentType: contentType,
		Context: clock, HasContext: hasContext, W: quorum,
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("X-Context", version.EncodeContext(written.Context))
	s.setSiblingHeaders(w.Header(), written.Siblings)
	w.WriteHeader(http.StatusNoContent)
}

// getKey is GET /keys/{key}: 200 with the value, 300 with every sibling, 404
// with no live value, 304 when If-None-Match matches. A client that prefers
// application/json gets the 200 and 300 as one JSON document (json.go).
func (s *server) getKey(w http.ResponseWriter, r *http.Request) {
	key, err := keyFromPath(r, keysPrefix)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	q, err := parseQuery(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	quorum, err := parseQuorum(q, "r", s.svc.Quorums().N)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	local, err := parseLocal(q)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var obj *version.Object
	if local {
		obj, err = s.svc.GetLocal(key)
	} else {
		obj, err = s.svc.Get(r.Context(), node.GetRequest{Key: key, R: quorum})
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.writeObject(w, r, obj)
}

// writeObject answers a read of obj in the representation the request
// negotiates. Both carry the same status, X-Context and Last-Modified; each
// has its own ETag. A 404 is the error body whatever was asked for.
func (s *server) writeObject(w http.ResponseWriter, r *http.Request, obj *version.Object) {
	h := w.Header()
	if !obj.Live() {
		if obj != nil && len(obj.Clock) > 0 {
			// A tombstone: a write with this context will not resurrect
			// what was deleted as a sibling.
			h.Set("X-Context", version.EncodeContext(obj.Context()))
		}
		s.fail(w, r, &apiError{http.StatusNotFound, codeNotFound, "the key has no value"})
		return
	}
	asJSON := wantsJSON(r.Header.Values("Accept"), nativeMediaType(obj))
	etag := obj.ETag()
	if asJSON {
		etag = jsonETag(etag)
	}
	h.Set("X-Context", version.EncodeContext(obj.Context()))
	s.setSiblingHeaders(h, len(obj.Siblings))
	h.Set("ETag", etag)
	// Caches may keep a value but must revalidate it: the ETag makes that cheap.
	h.Set("Cache-Control", "no-cache")
	h.Add("Vary", "Accept")
	if noneMatch(r.Header.Values("If-None-Match"), etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h.Set("X-Content-Type-Options", "nosniff")
	if modified := httpTime(obj.Modified()); modified != "" {
		h.Set("Last-Modified", modified)
	}

	var body []byte
	status := http.StatusOK
	if len(obj.Siblings) > 1 {
		status = http.StatusMultipleChoices
	}
	switch {
	case asJSON:
		body = encodeJSONSiblings(obj)
		h.Set("Content-Type", jsonMediaType)
	case len(obj.Siblings) == 1:
		body = obj.Siblings[0].Value
		h.Set("Content-Type", contentTypeOf(obj.Siblings[0].ContentType))
	default:
		var contentType string
		body, contentType = encodeSiblings(obj.Siblings)
		h.Set("Content-Type", contentType)
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	w.Write(body) //nolint:errcheck // the client may be gone; nothing to do
}

// setSiblingHeaders tells the client of a key with several siblings how
// many (X-Siblings) and, past --sibling-warn, what to do about them
// (Warning). One version gets neither.
func (s *server) setSiblingHeaders(h http.Header, siblings int) {
	if siblings < 2 {
		return
	}
	h.Set("X-Siblings", strconv.Itoa(siblings))
	if siblings > s.siblingWarn {
		h.Set("Warning", fmt.Sprintf(`199 - "%d siblings on this key; read it and write back a resolved value with its X-Context"`, siblings))
	}
}

// deleteKey is DELETE /keys/{key}: 204 with the tombstone's context, also
// when there was nothing to delete.
func (s *server) deleteKey(w http.ResponseWriter, r *http.Request) {
	key, quorum, clock, hasContext, err := s.parseWrite(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	deleted, err := s.svc.Delete(r.Context(), node.DeleteRequest{
		Key: key, Context: clock, HasContext: hasContext, W: quorum,
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("X-Context", version.EncodeContext(deleted))
	w.WriteHeader(http.StatusNoContent)
}

// parseWrite parses what PUT and DELETE share: the key, the w query and
// the X-Context header.
func (s *server) parseWrite(r *http.Request) (key []byte, quorum int, clock version.Clock, hasContext bool, err error) {
	if key, err = keyFromPath(r, keysPrefix); err != nil {
		return nil, 0, nil, false, err
	}
	q, err := parseQuery(r)
	if err != nil {
		return nil, 0, nil, false, err
	}
	if q.Has("local") {
		// An operator expecting a write to this node's copy alone would
		// otherwise get a quorum write.
		return nil, 0, nil, false, &apiError{http.StatusBadRequest, codeBadQuery,
			"local applies to GET only: a PUT or DELETE is always coordinated and stored on w replicas"}
	}
	if quorum, err = parseQuorum(q, "w", s.svc.Quorums().N); err != nil {
		return nil, 0, nil, false, err
	}
	clock, hasContext, err = parseContext(r.Header)
	return key, quorum, clock, hasContext, err
}

// httpTime formats t for Last-Modified, or returns "" for the zero time (no
// modification time recorded), which gets no header.
func httpTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(http.TimeFormat)
}
