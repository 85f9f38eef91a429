// Package selftest is the -once run the framework examples share: it sends
// a server a first request, a retry, a conflicting request, and eight
// identical requests at once under a new key, prints what came back, and
// checks the answers.
package selftest

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
)

type answer struct {
	status int
	replay string
	body   string
}

func post(url, apiKey, key, body string) (answer, error) {
	req, err := http.NewRequest("POST", url, strings.NewReader(body))
	if err != nil {
		return answer{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Api-Key", apiKey)
	req.Header.Set("Idempotency-Key", key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return answer{}, err
	}
	return answer{resp.StatusCode, resp.Header.Get("Idempotency-Replay"), strings.TrimSpace(string(b))}, nil
}

// Run posts JSON bodies to url with an X-Api-Key and an Idempotency-Key
// and returns an error unless the retry was a replay of the first, the
// conflicting body got 409, and the eight concurrent duplicates got one
// answer. runs reports how many times the handler ran; it must be 2.
func Run(url string, runs func() int64) error {
	var got []answer
	for _, body := range []string{`{"email":"a@example.com"}`, `{"email":"a@example.com"}`, `{"email":"b@example.com"}`} {
		a, err := post(url, "key_1", "i-1", body)
		if err != nil {
			return err
		}
		fmt.Printf("%d replay=%s %s\n", a.status, a.replay, a.body)
		got = append(got, a)
	}
	if got[1].replay != "true" || got[1].status != got[0].status || got[1].body != got[0].body {
		return fmt.Errorf("the retry was not a replay of the first answer")
	}
	if got[2].status != http.StatusConflict {
		return fmt.Errorf("the conflicting request got %d, want 409", got[2].status)
	}

	var wg sync.WaitGroup
	dups := make([]answer, 8)
	errs := make([]error, len(dups))
	for i := range dups {
		wg.Go(func() { dups[i], errs[i] = post(url, "key_1", "i-2", `{"email":"c@example.com"}`) })
	}
	wg.Wait()
	replays := 0
	for i, a := range dups {
		if errs[i] != nil {
			return errs[i]
		}
		if a.status != dups[0].status || a.body != dups[0].body {
			return fmt.Errorf("concurrent duplicates got different answers: %d %s and %d %s", dups[0].status, dups[0].body, a.status, a.body)
		}
		if a.replay == "true" {
			replays++
		}
	}
	fmt.Printf("%d concurrent duplicates: %d %s (%d replays)\n", len(dups), dups[0].status, dups[0].body, replays)
	fmt.Println("handler runs:", runs())
	if runs() != 2 {
		return fmt.Errorf("the handler ran %d times, want 2", runs())
	}
	return nil
}
