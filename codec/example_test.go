package codec_test

import (
	"fmt"
	"strings"

	"github.com/idemkv/idemkv/codec"
)

func Example() {
	body := []byte(strings.Repeat(`{"id":"call_123","status":"queued"},`, 40))
	frame, err := codec.Append(nil, body, codec.Auto)
	if err != nil {
		panic(err)
	}
	got, err := codec.Decode(nil, frame)
	if err != nil {
		panic(err)
	}
	fmt.Println(len(body), "bytes stored in", len(frame), "- round trip ok:", string(got) == string(body))
	// Output: 1440 bytes stored in 52 - round trip ok: true
}
