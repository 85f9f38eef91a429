package recordtest_test

import (
	"fmt"
	"math/rand/v2"

	"github.com/idemkv/idemkv/record/recordtest"
)

// An isolation test takes adversarial keys and their variants and checks
// that no two different keys share a record; here, that no two share an
// encoding.
func ExampleKeyVariants() {
	r := rand.New(rand.NewPCG(1, 2))
	clashes := 0
	for range 1000 {
		k := recordtest.AdversarialKey(r)
		enc := string(k.Append(nil))
		for _, v := range recordtest.KeyVariants(r, k) {
			if v != k && string(v.Append(nil)) == enc {
				clashes++
			}
		}
	}
	fmt.Println("keys sharing an encoding:", clashes)
	// Output: keys sharing an encoding: 0
}
