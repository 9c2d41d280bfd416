package api

import (
	"encoding/json"
	"mime"
	"strconv"
	"strings"
	"time"

	"github.com/dynamo-kv/dynamo/replication/version"
)

// jsonMediaType names the JSON representation of a read: every sibling in
// one document, for clients without a multipart parser.
const jsonMediaType = "application/json"

// siblingsDocument is the JSON representation of a 200 or 300 answer of
// GET /keys/{key} (openapi.yaml: Siblings).
type siblingsDocument struct {
	// Context is the answer's X-Context, repeated so that a client that
	// keeps only the body keeps what it must send back.
	Context  string         `json:"context"`
	Siblings []siblingEntry `json:"siblings"`
}

// siblingEntry is one live version (openapi.yaml: Sibling).
type siblingEntry struct {
	ContentType string `json:"content_type"`
	// Value is the stored bytes; encoding/json writes them as standard
	// base64 with padding, which any JSON consumer can decode.
	Value []byte `json:"value"`
	// LastModified is RFC 3339 in UTC with the write's full precision,
	// absent for a version stored without a write time.
	LastModified string `json:"last_modified,omitempty"`
}

// encodeJSONSiblings renders obj's live versions as the JSON representation,
// in the object's order, the same order as the parts of a multipart answer.
func encodeJSONSiblings(obj *version.Object) []byte {
	doc := siblingsDocument{
		Context:  version.EncodeContext(obj.Context()),
		Siblings: make([]siblingEntry, len(obj.Siblings)),
	}
	for i, s := range obj.Siblings {
		doc.Siblings[i] = siblingEntry{ContentType: contentTypeOf(s.ContentType), Value: s.Value}
		if t := siblingModified(s); !t.IsZero() {
			doc.Siblings[i].LastModified = t.UTC().Format(time.RFC3339Nano)
		}
	}
	// Strings, bytes and slices of them cannot fail to encode.
	body, _ := json.Marshal(doc)
	return append(body, '\n')
}

// jsonETag is the entity tag of the JSON representation. It differs from the
// value's own tag (a strong tag names one representation, RFC 9110 §8.8.3)
// and changes exactly when that one does.
func jsonETag(etag string) string {
	return strings.TrimSuffix(etag, `"`) + `-json"`
}

// nativeMediaType is the media type of a read's usual representation: the
// value's own type for one sibling, multipart/mixed for several.
func nativeMediaType(obj *version.Object) string {
	if len(obj.Siblings) == 1 {
		return contentTypeOf(obj.Siblings[0].ContentType)
	}
	return "multipart/mixed"
}

// wantsJSON decides from the request's Accept header lines whether a read
// whose usual representation has type native is answered as JSON instead.
//
// Each representation gets the q-value of the most specific media range that
// matches it (RFC 9110 §12.5.1). JSON is chosen when its q is above zero and
// above the native one's, or equal to it when application/json itself was
// named: "Accept: application/json" asks for the document even when the
// stored value is JSON, while a wildcard ("*/*", "application/*") or no
// Accept at all keeps the usual answer. When neither is acceptable the
// usual answer is sent, as before this representation existed, rather than
// a 406.
func wantsJSON(accept []string, native string) bool {
	ranges := parseAccept(accept)
	if len(ranges) == 0 {
		return false
	}
	qJSON, named := quality(ranges, jsonMediaType)
	qNative, _ := quality(ranges, native)
	return qJSON > 0 && (qJSON > qNative || (qJSON == qNative && named))
}

// mediaRange is one element of an Accept header.
type mediaRange struct {
	typ, sub string // lower case; "*" for a wildcard
	q        float64
}

// parseAccept reads Accept header lines. Elements that are not a media range,
// or whose q is not a number from 0 to 1, are skipped. Media-range parameters
// other than q are ignored: a range matches on type and subtype only.
func parseAccept(lines []string) []mediaRange {
	var out []mediaRange
	for _, line := range lines {
		for _, elem := range strings.Split(line, ",") {
			name, params, _ := strings.Cut(elem, ";")
			typ, sub, ok := strings.Cut(strings.ToLower(strings.TrimSpace(name)), "/")
			if !ok || typ == "" || sub == "" || (typ == "*" && sub != "*") {
				continue
			}
			r := mediaRange{typ: typ, sub: sub, q: 1}
			valid := true
			for _, p := range strings.Split(params, ";") {
				k, v, _ := strings.Cut(p, "=")
				if !strings.EqualFold(strings.TrimSpace(k), "q") {
					continue
				}
				q, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
				if err != nil || !(q >= 0 && q <= 1) { // NaN too
					valid = false
				}
				r.q = q
				break // parameters after q are accept extensions
			}
			if valid {
				out = append(out, r)
			}
		}
	}
	return out
}

// quality returns the q-value that ranges give mediaType: that of the most
// specific matching range (the highest q among equally specific ones), or 0
// when none matches. named reports that the type itself was listed.
func quality(ranges []mediaRange, mediaType string) (q float64, named bool) {
	mt, _, err := mime.ParseMediaType(mediaType)
	if err != nil {
		mt = strings.ToLower(strings.TrimSpace(mediaType))
	}
	typ, sub, _ := strings.Cut(mt, "/")
	best := -1 // specificity of the best match: 0 */*, 1 type/*, 2 type/sub
	for _, r := range ranges {
		var spec int
		switch {
		case r.typ == typ && r.sub == sub:
			spec = 2
		case r.typ == typ && r.sub == "*":
			spec = 1
		case r.typ == "*":
			spec = 0
		default:
			continue
		}
		if spec > best || (spec == best && r.q > q) {
			best, q = spec, r.q
		}
	}
	return q, best == 2
}
