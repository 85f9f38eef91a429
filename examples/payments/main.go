// Command payments is a create-payment endpoint in three phases — create
// the order, charge the card, email the receipt — that resumes after a
// crash instead of running twice, with idemkv's recovery points.
//
//	go run ./examples/payments [-listen 127.0.0.1:8093] [-data DIR] [-ledger DIR] [-crash-after PHASE]
//
// The side effects go to append-only files in the ledger directory
// (orders.log, charges.log, emails.log: one line per effect), standing in
// for a database, a card processor and a mail service. After each phase
// the handler records a recovery point; a retry after a crash reads the
// last one and skips the phases that already happened. With -crash-after
// order, charged or emailed the process kills itself (SIGKILL) right after
// recording that point, to show it:
//
//	go run ./examples/payments -crash-after charged &
//	curl -X POST localhost:8093/v1/payments -H 'Authorization: Bearer sk_test_1' -H 'Idempotency-Key: p1' -d '{"amount":1200}'   # the server dies
//	go run ./examples/payments &
//	curl -X POST localhost:8093/v1/payments -H 'Authorization: Bearer sk_test_1' -H 'Idempotency-Key: p1' -d '{"amount":1200}'   # resumes: emails only
//	cat payments-ledger/*.log                                                                  # one order, one charge, one email
package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/engine/idemhttp"
)

// state is what the recovery points carry: everything the later phases
// need to know about the earlier ones.
type state struct {
	Order  string `json:"order,omitempty"`
	Charge string `json:"charge,omitempty"`
}

// The phases, in order. A recovery point names the last phase done.
const (
	phaseOrder   = "order"
	phaseCharged = "charged"
	phaseEmailed = "emailed"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8093", "address to serve on")
	data := flag.String("data", "./payments-data", "idemkv data directory")
	ledgerDir := flag.String("ledger", "./payments-ledger", "directory of the side effects' logs")
	crashAfter := flag.String("crash-after", "", "kill the process (SIGKILL) right after recording this phase: order, charged or emailed")
	flag.Parse()

	eng, err := engine.Open(*data, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer eng.Close()
	idem, err := idemhttp.New(eng, &idemhttp.Options{RequireKey: true})
	if err != nil {
		log.Fatal(err)
	}
	led, err := openLedger(*ledgerDir)
	if err != nil {
		log.Fatal(err)
	}
	p := &payments{ledger: led, crashAfter: *crashAfter}
	mux := http.NewServeMux()
	mux.Handle("POST /v1/payments", idem.Handler(http.HandlerFunc(p.create)))
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("payments on http://%s\n", ln.Addr())
	log.Fatal(http.Serve(ln, mux))
}

type payments struct {
	ledger     *ledger
	crashAfter string
}

// create runs the phases that have not happened yet for this key.
func (p *payments) create(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	call, _ := idemhttp.FromContext(ctx)
	key := call.Key.Key
	// Who did a side effect: the attempt, and the request (two attempts
	// can have one number: a claim whose lease a crash lost before it
	// was written is claimed afresh, as attempt 1, without Recovered).
	tag := fmt.Sprintf("%s a%d/%s", key, call.Attempt, call.RequestID)
	var req struct {
		Amount int64 `json:"amount"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil || req.Amount <= 0 {
		http.Error(w, `{"error":"amount must be a positive integer"}`, http.StatusUnprocessableEntity)
		return
	}

	// Where the last attempt got to, if it was interrupted.
	var st state
	done := ""
	if phase, data, ok := idemhttp.LastCheckpoint(ctx); ok {
		done = phase
		if err := json.Unmarshal(data, &st); err != nil {
			http.Error(w, `{"error":"unreadable recovery point"}`, http.StatusInternalServerError)
			return
		}
	}
	step := func(phase string, run func() error) bool {
		if after(done, phase) {
			return true // happened before the crash
		}
		if err := run(); err != nil {
			http.Error(w, fmt.Sprintf(`{"error":%q}`, err.Error()), http.StatusServiceUnavailable)
			return false
		}
		b, _ := json.Marshal(st)
		if err := idemhttp.Checkpoint(ctx, phase, b); err != nil {
			http.Error(w, fmt.Sprintf(`{"error":%q}`, err.Error()), http.StatusServiceUnavailable)
			return false
		}
		if p.crashAfter == phase {
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {} // never returns
		}
		return true
	}
	ok := step(phaseOrder, func() error {
		st.Order = "ord_" + randomID()
		return p.ledger.append("orders", tag, st.Order)
	}) && step(phaseCharged, func() error {
		st.Charge = "ch_" + randomID()
		return p.ledger.append("charges", tag, fmt.Sprintf("%s %s %d", st.Charge, st.Order, req.Amount))
	}) && step(phaseEmailed, func() error {
		return p.ledger.append("emails", tag, "receipt for "+st.Order)
	})
	if !ok {
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Location", "/v1/payments/"+st.Order)
	w.WriteHeader(http.StatusCreated)
	fmt.Fprintf(w, `{"order":%q,"charge":%q,"amount":%d,"status":"paid"}`, st.Order, st.Charge, req.Amount)
}

// after reports whether phase is done once done (the last phase recorded)
// is: phases happen in order.
func after(done, phase string) bool {
	order := map[string]int{"": 0, phaseOrder: 1, phaseCharged: 2, phaseEmailed: 3}
	return order[done] >= order[phase]
}

func randomID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// ledger is the side effects: append-only files, one fsynced line per
// effect, "<idempotency key> a<attempt>/<request id> <detail>".
type ledger struct {
	dir string
	mu  sync.Mutex
}

func openLedger(dir string) (*ledger, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	return &ledger{dir: dir}, nil
}

func (l *ledger) append(name, tag, detail string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	f, err := os.OpenFile(filepath.Join(l.dir, name+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintf(f, "%s %s\n", tag, detail); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
