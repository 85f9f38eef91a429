package idemadmin_test

import (
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/idemkv/idemkv/engine/idemadmin"
	"github.com/idemkv/idemkv/engine/idemhttp"
	"github.com/idemkv/idemkv/engine/internal/idemtest"
)

// browser returns the path of a headless-capable Chromium, or skips the
// test (fails it where IDEMKV_TEST_BROWSER_REQUIRED=1, as in CI).
func browser(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	const why = "no chromium: install it (apt-get install chromium) to run the status page's browser test"
	if os.Getenv("IDEMKV_TEST_BROWSER_REQUIRED") == "1" {
		t.Fatal(why)
	}
	t.Skip(why)
	return ""
}

// render loads url in headless Chromium, lets its scripts run, and
// returns the DOM and the browser's log (where console messages and
// uncaught errors go).
func render(t *testing.T, chrome, u string, extra ...string) (dom, log string) {
	t.Helper()
	args := append([]string{"--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--no-first-run", "--user-data-dir=" + t.TempDir(), "--enable-logging=stderr", "--v=0",
		"--virtual-time-budget=10000", "--dump-dom"}, extra...)
	cmd := exec.Command(chrome, append(args, u)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium: %v\n%s", err, stderr.String())
	}
	return string(out), stderr.String()
}

// consoleErrors returns the lines of a browser log that report a script
// error.
func consoleErrors(log string) []string {
	var bad []string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "Uncaught") || (strings.Contains(l, "CONSOLE") && strings.Contains(strings.ToLower(l), "error")) {
			bad = append(bad, l)
		}
	}
	return bad
}

// The status page in a real headless browser: it loads without console
// errors, shows non-zero counters after traffic, draws its charts, and
// its lookup form (run from the address) finds a stored key.
func TestStatusPageInAHeadlessBrowser(t *testing.T) {
	chrome := browser(t)
	// The detector sees script errors: a page that throws is caught.
	if _, log := render(t, chrome, "data:text/html,<script>throw new Error('deliberate')</script>"); len(consoleErrors(log)) == 0 {
		t.Fatalf("a page that throws shows no console error; the check would prove nothing:\n%s", log)
	}

	eng := idemtest.NewEngine(t, nil)
	idem, err := idemhttp.New(eng, nil)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("POST /v1/orders", idem.Handler(idemtest.NewCounter()))
	app := httptest.NewServer(mux)
	defer app.Close()
	idemtest.Do(t, "POST", app.URL+"/v1/orders", "k-1", `{"a":1}`)
	idemtest.Do(t, "POST", app.URL+"/v1/orders", "k-1", `{"a":1}`)
	idemtest.Do(t, "POST", app.URL+"/v1/orders", "k-1", `{"a":2}`)

	admin := http.NewServeMux()
	admin.Handle("GET /{$}", idemadmin.NewStatus(eng, idem, ""))
	admin.Handle("/admin/", http.StripPrefix("/admin", idemadmin.Handler(eng, &idemadmin.Options{Scope: idem.ScopeOf})))
	srv := httptest.NewServer(admin)
	defer srv.Close()

	scope, err := idem.ScopeOf(idemtest.DefaultCredential)
	if err != nil {
		t.Fatal(err)
	}
	q := url.Values{"endpoint": {"POST /v1/orders"}, "key": {"k-1"}, "scope": {"0x" + hex.EncodeToString([]byte(scope))}}
	var extra []string
	if shot := os.Getenv("IDEMKV_STATUS_SCREENSHOT"); shot != "" {
		// go test -run TestStatusPage ./engine/idemadmin with this set
		// writes the README's picture.
		extra = append(extra, "--screenshot="+shot, "--window-size=1100,1250", "--hide-scrollbars")
	}
	dom, log := render(t, chrome, srv.URL+"/?"+q.Encode(), extra...)
	if bad := consoleErrors(log); len(bad) > 0 {
		t.Errorf("console errors:\n%s", strings.Join(bad, "\n"))
	}
	for _, want := range []string{
		`id="proceeded">1<`, `id="replayed">1<`, `id="conflicts">1<`, `id="completes">1<`,
		`<td>POST /v1/orders</td>`, `class="chart"`, `"state": "completed"`, `"status": 201`,
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("the rendered page lacks %q", want)
		}
	}
	if n := strings.Count(dom, `class="chart"`); n != 6 {
		t.Errorf("%d charts drawn, want 6", n)
	}
	if t.Failed() {
		t.Logf("DOM:\n%s", dom)
	}
}

// Without the token the page is refused; ?token= once keeps it in a
// cookie, and the page then loads.
func TestStatusPageNeedsTheToken(t *testing.T) {
	eng := idemtest.NewEngine(t, nil)
	srv := httptest.NewServer(idemadmin.NewStatus(eng, nil, "s3cret"))
	defer srv.Close()
	if resp, err := http.Get(srv.URL + "/"); err != nil || resp.StatusCode != 401 {
		t.Fatalf("without the token: %v %v", resp.Status, err)
	}
	jar := &cookieJar{}
	c := &http.Client{Jar: jar}
	resp, err := c.Get(srv.URL + "/?token=s3cret")
	if err != nil || resp.StatusCode != 200 || resp.Request.URL.RawQuery != "" {
		t.Fatalf("with ?token=: %v %v (ended at %v)", resp.Status, err, resp.Request.URL)
	}
	if resp, err := c.Get(srv.URL + "/?token=wrong"); err == nil && resp.StatusCode == 200 && jar.value == "wrong" {
		t.Error("a wrong token was kept")
	}
}

type cookieJar struct {
	cookies []*http.Cookie
	value   string
}

func (j *cookieJar) SetCookies(_ *url.URL, cs []*http.Cookie) {
	j.cookies = append(j.cookies, cs...)
	for _, c := range cs {
		j.value = c.Value
	}
}
func (j *cookieJar) Cookies(*url.URL) []*http.Cookie { return j.cookies }
