// Package earlier finds what a request's key was stored under before its
// credential's current scope: under a previous scope secret during a
// rotation, or under a version-1 digest during the upgrade window (see
// engine.Scoper.Earlier). The HTTP middleware and the RPC adapters ask it
// for every fresh claim.
package earlier

import (
	"context"

	"github.com/idemkv/idemkv/engine"
	"github.com/idemkv/idemkv/record"
)

// Check returns res, or, when res is a fresh claim (not Recovered) of a
// request with a credential and a record of the same key is stored under
// one of the credential's earlier scopes, what the request gets from that
// record (a replay, a conflict, or in progress), after releasing the
// claim. asSent is the credential as the request spelled it. It costs one
// read of the store per earlier scope; with no previous secret and no
// upgrade window there is none, and it costs nothing.
func Check(ctx context.Context, store engine.Store, res engine.Result, req engine.Request, credential, asSent string) engine.Result {
	if res.Outcome != engine.Proceed || res.Recovered || credential == "" {
		return res
	}
	var buf [4]string
	for _, scope := range store.Scoper().Earlier(buf[:0], credential, asSent) {
		k := req.Key
		k.Scope = scope
		rec, err := store.Get(ctx, k)
		if err != nil || rec == nil {
			continue
		}
		_ = res.Claim.Release(ctx) // if it fails, a retry recovers the claim
		return answer(rec, req)
	}
	return res
}

// answer is what req gets from rec, a record stored for its key that
// Begin did not see: Replay, Conflict, or InProgress for a claim.
func answer(rec *record.Record, req engine.Request) engine.Result {
	switch {
	case rec.State != record.Completed:
		return engine.Result{Outcome: engine.InProgress, OriginalRequestID: rec.RequestID}
	case rec.Fingerprint != req.Fingerprint:
		return engine.Result{Outcome: engine.Conflict, Record: rec.WithoutBody(), OriginalRequestID: rec.RequestID}
	}
	return engine.Result{Outcome: engine.Replay, Record: rec}
}
