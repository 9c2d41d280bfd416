package api

import (
	"bytes"
	"mime"
	"mime/multipart"
	"net/textproto"
	"time"

	"github.com/dynamo-kv/dynamo/replication/version"
)

// encodeSiblings renders the body of a 300 answer: multipart/mixed, one part
// per sibling in the object's order, each with its own Content-Type and
// Last-Modified and the value as its body. It returns the body and the
// response's Content-Type, which carries the boundary.
//
// The body is built in memory so that its length is known before the status
// is sent; values are bounded by the value size limit.
func encodeSiblings(siblings []version.Sibling) (body []byte, contentType string) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	// The boundary is random, so this loop practically never repeats; it
	// makes a value that contains it by design harmless all the same.
	for containsBoundary(siblings, mw.Boundary()) {
		mw = multipart.NewWriter(&buf)
	}
	for _, s := range siblings {
		header := textproto.MIMEHeader{}
		header.Set("Content-Type", contentTypeOf(s.ContentType))
		if modified := httpTime(siblingModified(s)); modified != "" {
			header.Set("Last-Modified", modified)
		}
		// Writes to a bytes.Buffer cannot fail.
		part, _ := mw.CreatePart(header)
		part.Write(s.Value) //nolint:errcheck
	}
	mw.Close() //nolint:errcheck
	return buf.Bytes(), mime.FormatMediaType("multipart/mixed", map[string]string{"boundary": mw.Boundary()})
}

func containsBoundary(siblings []version.Sibling, boundary string) bool {
	for _, s := range siblings {
		if bytes.Contains(s.Value, []byte(boundary)) {
			return true
		}
	}
	return false
}

// siblingModified is the sibling's write time; zero when none was recorded.
func siblingModified(s version.Sibling) time.Time {
	if s.Modified == 0 {
		return time.Time{}
	}
	return time.Unix(0, s.Modified)
}
