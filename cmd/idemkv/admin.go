package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/idemkv/idemkv/engine/idemadmin"
)

// runAdmin is 'idemkv admin': the command line of the live admin API of a
// running proxy or serve (package idemadmin).
func runAdmin(args []string) error {
	fs := newFlagSet("idemkv admin", "Usage: idemkv admin get|delete|list|stats|health -addr URL [flags]\n\n"+
		"Asks a running idemkv proxy or serve, through its admin listener (-admin), about\n"+
		"its records: get shows one key's record (without its body), delete removes it (the\n"+
		"next request with the key runs as new), list pages through the keys of a tenant\n"+
		"or of one of its endpoints, stats and health show the store's. A tenant is named\n"+
		"by the credential its clients send (-credential), which the server digests as it\n"+
		"does for requests, or by its scope (-scope, as idemkv inspect prints it).\n\n")
	addr := fs.String("addr", "http://127.0.0.1:9090", "`URL` of the admin listener")
	token := fs.String("token", os.Getenv(envName("admin-token")), "the admin `token` (default from "+envName("admin-token")+")")
	var kr idemadmin.KeyRequest
	fs.StringVar(&kr.Credential, "credential", "", "the tenant's `credential` as its clients send it (the Authorization value, the API key, the session cookie's value)")
	fs.StringVar(&kr.Scope, "scope", "", "the tenant's `scope`, as text or 0x-prefixed hex (what idemkv inspect prints)")
	fs.StringVar(&kr.Endpoint, "endpoint", "", "the `endpoint`, method and route: 'POST /v1/charges'")
	fs.StringVar(&kr.Key, "key", "", "the idempotency `key`")
	fs.StringVar(&kr.After, "after", "", "list: start after this `cursor` (the previous page's next)")
	fs.IntVar(&kr.Limit, "limit", 100, "list: records per page (`n`, at most 1000)")
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		fs.Usage()
		return errUsage
	}
	verb, args := args[0], args[1:]
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var method, path string
	var body any
	switch verb {
	case "get", "delete", "list":
		method, path, body = "POST", "/admin/v1/keys/"+verb, kr
	case "stats", "health":
		method, path = "GET", "/admin/v1/"+verb
	default:
		fmt.Fprintf(fs.Output(), "idemkv admin: unknown action %q: want get, delete, list, stats or health\n", verb)
		return errUsage
	}
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, strings.TrimSuffix(*addr, "/")+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if *token != "" {
		req.Header.Set("Authorization", "Bearer "+*token)
	}
	resp, err := (&http.Client{Timeout: time.Minute}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	var pretty bytes.Buffer
	if json.Indent(&pretty, b, "", "  ") != nil {
		pretty.Reset()
		pretty.Write(b)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error, Detail string }
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return fmt.Errorf("%s: %s (%s)", resp.Status, e.Detail, e.Error)
		}
		return errors.New(resp.Status + ": " + strings.TrimSpace(pretty.String()))
	}
	if !bytes.HasSuffix(pretty.Bytes(), []byte("\n")) {
		pretty.WriteByte('\n')
	}
	os.Stdout.Write(pretty.Bytes())
	return nil
}
