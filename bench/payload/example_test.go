package payload_test

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/idemkv/idemkv/bench/payload"
)

// A body is valid JSON of at least the size asked for, and the same seed
// gives the same body.
func ExampleJSON() {
	a := payload.JSON(nil, 2048, 42)
	b := payload.JSON(nil, 2048, 42)
	fmt.Println(json.Valid(a), len(a) >= 2048, bytes.Equal(a, b))
	fmt.Println(string(a[:20]))
	// Output:
	// true true true
	// {"data":{"id":"call_
}
