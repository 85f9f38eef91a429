package idemadmin_test

import (
	"log"
	"net/http"

	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/engine/idemadmin"
	"github.com/idemkv/idemkv/engine/idemhttp"
)

// An application mounts the admin API and the status page on a listener
// of its own, beside its API: operators then use `idemkv admin -addr` and
// a browser.
func ExampleHandler() {
	eng, err := engine.Open("data", &engine.Options{InMemory: true})
	if err != nil {
		log.Fatal(err)
	}
	defer eng.Close()
	idem, err := idemhttp.New(eng, nil)
	if err != nil {
		log.Fatal(err)
	}
	const token = "from a secret store, not the source"
	admin := http.NewServeMux()
	admin.Handle("/admin/", http.StripPrefix("/admin", idemadmin.Handler(eng, &idemadmin.Options{Token: token, Scope: idem.ScopeOf})))
	admin.Handle("GET /{$}", idemadmin.NewStatus(eng, idem, token))
	_ = &http.Server{Addr: "127.0.0.1:9090", Handler: admin} // ListenAndServe in a real program
}
