package idemhttp_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"github.com/idemkv/idemkv/engine/internal/idemtest"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/idemkv/idemkv/engine/idemhttp"
)

// A handler may turn off sniffing with Header()["Content-Type"] = nil: the
// first response then has no Content-Type, and neither has its replay
// (net/http would otherwise sniff one for the replay).
func TestSuppressedContentTypeStaysSuppressedOnReplay(t *testing.T) {
	srv, _ := newServer(t, idemtest.NewEngine(t, nil), nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Content-Type"] = nil
		w.WriteHeader(201)
		io.WriteString(w, "plain bytes")
	}))
	first := idemtest.Do(t, "POST", srv.URL+"/x", "k", "")
	again := idemtest.Do(t, "POST", srv.URL+"/x", "k", "")
	if again.Header.Get("Idempotency-Replay") != "true" {
		t.Fatalf("not replayed: %+v", again)
	}
	if f, a := first.Header.Values("Content-Type"), again.Header.Values("Content-Type"); len(f) != len(a) {
		t.Fatalf("Content-Type: first response %q, replay %q", f, a)
	}
}

// net/http does not sniff a body that has a Content-Encoding (issue
// 31753), and neither does the recorder: a gzipped body is sent with the
// Content-Type it has without the middleware, never with one the handler
// did not set (application/x-gzip).
func TestContentEncodedBodyIsNotSniffed(t *testing.T) {
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(`{"ok":true}`))
	zw.Close()
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Encoding", "gzip")
		w.WriteHeader(201)
		w.Write(gz.Bytes())
	})
	plain := httptest.NewServer(handler)
	defer plain.Close()
	srv, _ := newServer(t, idemtest.NewEngine(t, nil), nil, handler)
	get := func(u string) http.Header {
		req, _ := http.NewRequest("POST", u, nil)
		req.Header.Set("Idempotency-Key", "k")
		req.Header.Set("Authorization", idemtest.DefaultCredential)
		req.Header.Set("Accept-Encoding", "gzip") // keep the transport from decoding
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.Header
	}
	want := get(plain.URL + "/x").Values("Content-Type")
	got := get(srv.URL + "/x").Values("Content-Type")
	if len(want) != len(got) {
		t.Fatalf("Content-Type without the middleware %q, with it %q", want, got)
	}
}

// Trailers the handler declared reach the client with the first response:
// the recorder does not give such a response a Content-Length, whose
// identity framing would drop them.
func TestDeclaredTrailersAreSent(t *testing.T) {
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Checksum")
		w.WriteHeader(201)
		io.WriteString(w, "payload")
		w.Header().Set("X-Checksum", "abc")
	})
	srv, _ := newServer(t, idemtest.NewEngine(t, nil), nil, handler)
	req, _ := http.NewRequest("POST", srv.URL+"/x", strings.NewReader("a"))
	req.Header.Set("Idempotency-Key", "k")
	req.Header.Set("Authorization", idemtest.DefaultCredential)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if got := resp.Trailer.Get("X-Checksum"); got != "abc" {
		t.Fatalf("trailer X-Checksum = %q; want abc (Content-Length %d)", got, resp.ContentLength)
	}
}

// When Hijack fails (HTTP/2, here), the recorder sends what it held back
// before it switches to pass-through: the status and body written before
// the attempt reach the client.
func TestFailedHijackKeepsBufferedResponse(t *testing.T) {
	m, err := idemhttp.New(idemtest.NewEngine(t, nil), &idemhttp.Options{Logger: idemtest.QuietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusAccepted)
		io.WriteString(w, "accepted;")
		if _, _, err := http.NewResponseController(w).Hijack(); err == nil {
			t.Error("Hijack succeeded on HTTP/2")
		}
	})))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	req, _ := http.NewRequest("POST", srv.URL+"/x", strings.NewReader("a"))
	req.Header.Set("Idempotency-Key", "k")
	req.Header.Set("Authorization", idemtest.DefaultCredential)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 2 {
		t.Fatalf("not HTTP/2: %s", resp.Proto)
	}
	if resp.StatusCode != http.StatusAccepted || string(b) != "accepted;" {
		t.Fatalf("after a failed Hijack the client got %d %q; want 202 %q", resp.StatusCode, b, "accepted;")
	}
}

// An informational response (103 Early Hints) is sent at once, before the
// final response, and is not part of the record: the replay has the
// final status, headers and body only.
func TestEarlyHintsSentNotRecorded(t *testing.T) {
	var runs atomic.Int64
	srv, _ := newServer(t, idemtest.NewEngine(t, nil), nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		runs.Add(1)
		w.Header().Set("Link", "</a.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{"id":7}`)
	}))
	call := func() (codes []int, r idemtest.Reply) {
		trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, _ textproto.MIMEHeader) error {
			codes = append(codes, code)
			return nil
		}}
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "POST", srv.URL+"/x", strings.NewReader("a"))
		req.Header.Set("Idempotency-Key", "k")
		req.Header.Set("Authorization", idemtest.DefaultCredential)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return codes, idemtest.Reply{Status: resp.StatusCode, Header: resp.Header, Body: string(b)}
	}
	c1, first := call()
	c2, again := call()
	if len(c1) != 1 || c1[0] != 103 || first.Status != 201 || first.Body != `{"id":7}` {
		t.Fatalf("first: 1xx %v, %d %q", c1, first.Status, first.Body)
	}
	if len(c2) != 0 || again.Status != 201 || again.Body != first.Body || again.Header.Get("Idempotency-Replay") != "true" {
		t.Fatalf("replay: 1xx %v, %d %q replay=%q", c2, again.Status, again.Body, again.Header.Get("Idempotency-Replay"))
	}
	if again.Header.Get("Link") != "" || runs.Load() != 1 {
		t.Fatalf("replay Link %q, runs %d", again.Header.Get("Link"), runs.Load())
	}
}

// WriteHeader called twice: the first status is the one sent and
// recorded, as net/http does.
func TestWriteHeaderTwiceKeepsFirstStatus(t *testing.T) {
	srv, _ := newServer(t, idemtest.NewEngine(t, nil), nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusAccepted)
		w.WriteHeader(http.StatusInternalServerError)
		io.WriteString(w, "queued")
	}))
	srv.Config.ErrorLog = idemtest.QuietHTTPLog()
	first := idemtest.Do(t, "POST", srv.URL+"/x", "k", "")
	again := idemtest.Do(t, "POST", srv.URL+"/x", "k", "")
	if first.Status != 202 || again.Status != 202 || again.Body != "queued" || again.Header.Get("Idempotency-Replay") != "true" {
		t.Fatalf("first %d %q, replay %d %q (replay=%q)", first.Status, first.Body, again.Status, again.Body, again.Header.Get("Idempotency-Replay"))
	}
}

// A 204 replays as a 204 with no body and no Content-Length; a binary,
// content-encoded body replays byte for byte with its encoding and the
// right length.
func TestReplayKeepsFraming(t *testing.T) {
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(bytes.Repeat([]byte("binary\x00\xff"), 100))
	zw.Close()
	mux := http.NewServeMux()
	mux.HandleFunc("/nocontent", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Etag", `"e1"`)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("/gz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Encoding", "gzip")
		w.WriteHeader(http.StatusCreated)
		w.Write(gz.Bytes()[:10])
		w.Write(gz.Bytes()[10:])
	})
	srv, _ := newServer(t, idemtest.NewEngine(t, nil), nil, mux)
	raw := func(path string) (*http.Response, []byte) {
		req, _ := http.NewRequest("POST", srv.URL+path, nil)
		req.Header.Set("Idempotency-Key", "k")
		req.Header.Set("Authorization", idemtest.DefaultCredential)
		req.Header.Set("Accept-Encoding", "gzip")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	for _, path := range []string{"/nocontent", "/gz"} {
		r1, b1 := raw(path)
		r2, b2 := raw(path)
		if r2.Header.Get("Idempotency-Replay") != "true" {
			t.Fatalf("%s: not replayed", path)
		}
		if r1.StatusCode != r2.StatusCode || !bytes.Equal(b1, b2) || r1.ContentLength != r2.ContentLength {
			t.Fatalf("%s: first %d %d bytes (Content-Length %d), replay %d %d bytes (Content-Length %d)",
				path, r1.StatusCode, len(b1), r1.ContentLength, r2.StatusCode, len(b2), r2.ContentLength)
		}
		for _, h := range []string{"Content-Type", "Content-Encoding", "Etag"} {
			if r1.Header.Get(h) != r2.Header.Get(h) {
				t.Errorf("%s: %s %q then %q", path, h, r1.Header.Get(h), r2.Header.Get(h))
			}
		}
		if path == "/nocontent" && (len(b2) != 0 || r2.Header.Get("Content-Length") != "") {
			t.Errorf("204 replay: body %q, Content-Length %q", b2, r2.Header.Get("Content-Length"))
		}
		if path == "/gz" && !bytes.Equal(b2, gz.Bytes()) {
			t.Errorf("gzip body changed on replay")
		}
	}
}
