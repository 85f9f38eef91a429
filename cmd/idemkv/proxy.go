package main

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/idemkv/idemkv/engine/idemhttp"
	"github.com/idemkv/idemkv/engine/idemproxy"
)

// runProxy is 'idemkv proxy': the idempotency contract in front of any
// HTTP API.
func runProxy(args []string) error {
	fs := newFlagSet("idemkv proxy", "Usage: idemkv proxy -upstream URL [flags]\n\n"+
		"A reverse proxy that adds idempotency keys to any HTTP API: a retry with the\n"+
		"same key and body gets the stored response, the same key with another body\n"+
		"409, and a duplicate in flight waits for the first. The endpoint of a key is\n"+
		"the method and the path. SIGINT/SIGTERM stop it gracefully.\n\n")
	var f serverFlags
	f.register(fs, "127.0.0.1:8081")
	upstream := fs.String("upstream", "", "`URL` of the API to protect, e.g. http://127.0.0.1:3000")
	var routes []idemhttp.Route
	fs.Func("route", "`METHOD /path` that takes keys (repeatable; a Go ServeMux pattern such as 'POST /v1/charges/{id}/refunds', matched against the request's cleaned path: a trailing slash, repeated slashes and dot segments do not get past it, nor does the method's case); default every POST, PUT, PATCH and DELETE", func(s string) error {
		m, p, ok := strings.Cut(strings.TrimSpace(s), " ")
		if !ok || !strings.HasPrefix(strings.TrimSpace(p), "/") {
			return fmt.Errorf("want METHOD /path, got %q", s)
		}
		routes = append(routes, idemhttp.Route{Method: strings.ToUpper(m), Pattern: strings.TrimSpace(p)})
		return nil
	})
	ignoreCase := fs.Bool("route-ignore-case", false, "match -route paths, and key requests, ignoring letter case (for an upstream whose router does)")
	requireKey := fs.Bool("require-key", false, "refuse a selected request without a key (400) instead of passing it through")
	maxBody := fs.Int64("max-request-body", idemhttp.DefaultMaxRequestBody, "largest request `bytes` accepted (413 above)")
	if err := parseServerFlags(fs, args); err != nil {
		return err
	}
	u, err := url.Parse(*upstream)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		fmt.Fprintf(fs.Output(), "idemkv proxy: -upstream must be an http or https URL (got %q)\n", *upstream)
		return errUsage
	}
	for i := range routes {
		routes[i].RequireKey = *requireKey
	}
	s, err := openServer(&f, &idemhttp.Options{Routes: routes, RequireKey: *requireKey, MaxRequestBody: *maxBody, CaseInsensitivePaths: *ignoreCase})
	if err != nil {
		return err
	}
	return s.run(idemproxy.New(u, s.idem, &idemproxy.Options{Logger: s.logger}), func(addr string) {
		fmt.Printf("idemkv proxy on http://%s -> %s (records in %s)\n", addr, u, s.where)
	})
}
