package main

import (
	"testing"

	"github.com/idemkv/idemkv/examples/internal/killtest"
)

func startServer(t *testing.T, bin, data, led, crashAfter string) *killtest.Server {
	t.Helper()
	args := []string{"-listen", "127.0.0.1:0", "-data", data, "-ledger", led}
	if crashAfter != "" {
		args = append(args, "-crash-after", crashAfter)
	}
	return killtest.Start(t, bin, args...)
}

func post(addr, key string) (int, string, error) {
	status, body, _, err := killtest.Post(addr, "/v1/payments", key, `{"amount":1200}`)
	return status, body, err
}
