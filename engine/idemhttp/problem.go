package idemhttp

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// Codes of the problems the middleware answers with (the "code" member of
// the problem body).
const (
	CodeKeyInvalid     = "idempotency_key_invalid"         // 400
	CodeKeyMissing     = "idempotency_key_missing"         // 400
	CodeScopeMissing   = "idempotency_scope_missing"       // 400
	CodeScopeInvalid   = "idempotency_scope_invalid"       // 400
	CodeBodyTooLarge   = "request_body_too_large"          // 413
	CodeBodyUnreadable = "request_body_unreadable"         // 400
	CodeConflict       = "idempotency_conflict"            // 409 or 422
	CodeInProgress     = "idempotency_request_in_progress" // 409
	CodeUnavailable    = "idempotency_store_unavailable"   // 503
	CodeOverloaded     = "idempotency_overloaded"          // 503: see Options.MaxBufferedBytes
	CodeRecordDamaged  = "idempotency_record_damaged"      // 500
)

// Problem is the body of every error the middleware itself answers with:
// an RFC 9457 problem document (application/problem+json) with two
// extension members, code and fields.
type Problem struct {
	Type   string            `json:"type"`
	Title  string            `json:"title"`
	Status int               `json:"status"`
	Detail string            `json:"detail"`
	Code   string            `json:"code"`
	Fields map[string]string `json:"fields,omitempty"`
}

func codeForStatus(status int) string {
	if status == http.StatusRequestEntityTooLarge {
		return CodeBodyTooLarge
	}
	return CodeBodyUnreadable
}

// problem writes a problem answer. reqID, if set, goes in the request id
// header.
func (m *Middleware) problem(w http.ResponseWriter, reqID string, status int, code, detail string, fields map[string]string) {
	b, err := json.Marshal(Problem{
		Type: "about:blank", Title: http.StatusText(status), Status: status,
		Detail: detail, Code: code, Fields: fields,
	})
	if err != nil { // cannot happen for these types
		b = []byte(`{"title":"error"}`)
	}
	b = append(b, '\n')
	h := w.Header()
	h.Set("Content-Type", contentTypeJSON)
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	h.Del(headerReplay)
	if reqID != "" {
		h.Set(m.c.RequestIDHeader, reqID)
	}
	w.WriteHeader(status)
	w.Write(b)
}
