package bench

import (
	"encoding/binary"

	"github.com/idemkv/idemkv/bench/payload"
	"github.com/idemkv/idemkv/record"
)

// The key parts every request uses: a tenant and an operation.
const (
	benchScope    = "acct_9f2c4e1d7a3b"
	benchEndpoint = "POST /v1/calls"
	idLen         = 36 // a UUID's text form
	nBodies       = 8  // distinct bodies per dataset
)

// dataset holds the inputs of a run. Every key has an index, and its
// idempotency key, body and fingerprint are functions of that index, so
// that tens of millions of records can be stored without holding their
// keys in memory. The keys of the measured phase, a window of indexes
// base to base+n, are computed up front so that operations neither
// allocate nor hash their inputs.
type dataset struct {
	base   int    // index of the window's first key
	n      int    // keys in the window
	ids    string // the window's idempotency keys, idLen bytes each
	bodies [][]byte
	fps    []record.Fingerprint // fps[j] is record.Sum(bodies[j])
	hdr    []record.Header
}

// newDataset returns a dataset of bodies of about size bytes with the
// window of keys 0 to n.
func newDataset(n, size int) *dataset {
	d := &dataset{hdr: []record.Header{{Name: "Content-Type", Value: "application/json"}}}
	for j := range nBodies {
		b := payload.JSON(nil, size, uint64(j+1))
		d.bodies = append(d.bodies, b)
		d.fps = append(d.fps, record.Sum(b))
	}
	d.setWindow(0, n)
	return d
}

// setWindow makes the keys base to base+n the window that operations
// address (operation i uses key base+i). It must not be called while
// operations run.
func (d *dataset) setWindow(base, n int) {
	ids := make([]byte, 0, n*idLen)
	for i := range n {
		ids = appendID(ids, uint64(base+i))
	}
	d.base, d.n, d.ids = base, n, string(ids)
}

// appendID appends the idempotency key of index x to dst: UUID-shaped, 8
// bytes mixed from x, then x itself (below 2^63, so that the variant bits
// do not collide), so keys are distinct and arrive in random order, like
// client-generated UUIDs.
func appendID(dst []byte, x uint64) []byte {
	var u [16]byte
	binary.LittleEndian.PutUint64(u[:8], mix64(x^0x6b657973))
	binary.BigEndian.PutUint64(u[8:], x)
	u[6] = u[6]&0x0f | 0x40 // version 4
	u[8] |= 0x80            // variant 10
	const hex = "0123456789abcdef"
	for k, b := range u {
		if k == 4 || k == 6 || k == 8 || k == 10 {
			dst = append(dst, '-')
		}
		dst = append(dst, hex[b>>4], hex[b&15])
	}
	return dst
}

// mix64 is SplitMix64's finalizer: a bijection that scatters the bits of x.
func mix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// id returns operation i's idempotency key (it is also used as the
// request id).
func (d *dataset) id(i int) string { return d.ids[i*idLen : (i+1)*idLen] }

// key returns operation i's idemkv key.
func (d *dataset) key(i int) record.Key {
	return record.Key{Scope: benchScope, Endpoint: benchEndpoint, Key: d.id(i)}
}

// appendKey appends the baselines' key of operation i to dst: the same
// bytes as idemkv's encoded key (scope, endpoint, key).
func (d *dataset) appendKey(dst []byte, i int) []byte { return d.key(i).Append(dst) }

// body returns operation i's response body.
func (d *dataset) body(i int) []byte { return d.bodyAt(d.base + i) }

// fp returns the fingerprint of operation i's request.
func (d *dataset) fp(i int) record.Fingerprint { return d.fpAt(d.base + i) }

// otherFP returns a fingerprint that differs from fp(i), for conflicts.
func (d *dataset) otherFP(i int) record.Fingerprint { return d.fpAt(d.base + i + 1) }

// bodyAt and fpAt return the body and fingerprint of key index x, which
// need not be in the window.
func (d *dataset) bodyAt(x int) []byte           { return d.bodies[x%nBodies] }
func (d *dataset) fpAt(x int) record.Fingerprint { return d.fps[x%nBodies] }

// keyAt returns the idemkv key of index x, which need not be in the
// window; it allocates the key's string.
func (d *dataset) keyAt(x int) record.Key {
	return record.Key{Scope: benchScope, Endpoint: benchEndpoint, Key: string(appendID(make([]byte, 0, idLen), uint64(x)))}
}

// bodyLen returns the mean length of the bodies.
func (d *dataset) bodyLen() int {
	t := 0
	for _, b := range d.bodies {
		t += len(b)
	}
	return t / len(d.bodies)
}
