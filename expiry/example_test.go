package expiry_test

import (
	"fmt"
	"time"

	"github.com/idemkv/idemkv/expiry"
)

func ExampleGenerations() {
	ttl := 24 * time.Hour
	g := expiry.Generations{Width: expiry.DefaultWidth(ttl)} // 3h
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)

	first, last := g.Live(now, ttl)
	fmt.Println("a lookup probes generations", first, "to", last)
	fmt.Println("the sweeper may drop everything before", g.Droppable(now))
	// Output:
	// a lookup probes generations 166243 to 166251
	// the sweeper may drop everything before 166243
}
