package pgstore

import (
	"context"
	"encoding/hex"
	"fmt"

	"github.com/idemkv/idemkv/engine"
)

// CheckScopeSecret checks Options.ScopeSecret against the secret the
// table's records are stored under (the meta row scope.check, see
// schema.go): it returns an error matching ErrScopeSecret if it is
// another (neither ScopeSecret nor one of PreviousScopeSecrets); the
// first replica to start records its own. A check value of a previous
// secret is replaced by the current one's, so that, once every replica
// has the new secret, the old one can go. Open calls it; a Store made by
// New should call it once before use.
//
// (Unlike the embedded and Redis stores, a table never held records under
// the unkeyed digests of versions before keyed scopes, so there is no
// upgrade window.)
func (s *Store) CheckScopeSecret(ctx context.Context) error {
	if s.closed.Load() {
		return engine.ErrClosed
	}
	cur := hex.EncodeToString(s.scoper.Check())
	var got string
	err := s.pool.QueryRow(ctx, sqlFor(s.opts.Table, `WITH ins AS (
		INSERT INTO {T}_meta (name, value) VALUES ('scope.check', $1) ON CONFLICT (name) DO NOTHING RETURNING value)
		SELECT value FROM ins UNION ALL SELECT value FROM {T}_meta WHERE name = 'scope.check'`), cur).Scan(&got)
	if err != nil {
		return s.queryErr("scope secret check", ctx, err)
	}
	check, err := hex.DecodeString(got)
	if err != nil {
		return fmt.Errorf("pgstore: %w: %s_meta: scope.check is %q", engine.ErrCorrupt, s.opts.Table, got)
	}
	switch s.scoper.Knows(check) {
	case -1:
		return fmt.Errorf("%w (table %s)", ErrScopeSecret, s.opts.Table)
	case 0:
		return nil
	}
	_, err = s.pool.Exec(ctx, sqlFor(s.opts.Table, `UPDATE {T}_meta SET value = $1 WHERE name = 'scope.check'`), cur)
	if err != nil {
		return s.queryErr("scope secret check", ctx, err)
	}
	return nil
}
