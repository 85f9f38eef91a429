// Package payload generates realistic JSON API response bodies for
// benchmarks and compression measurements.
//
// Bodies are deterministic for a given seed and size and shaped like the
// response of a typical REST API that creates a resource: an envelope with
// a resource object (ids, timestamps, enums, URLs that repeat the id, a
// money object, metadata, nulls and booleans) whose list of events grows
// until the body reaches the requested size. Ids, numbers and timestamps are
// random, so the bodies are neither incompressible noise nor unrealistically
// repetitive; compression ratios and costs measured on them carry over to
// real traffic of this kind.
package payload

import (
	"math/rand/v2"
	"strconv"
)

var (
	statuses = []string{"queued", "ringing", "in_progress", "completed", "failed", "canceled"}
	events   = []string{"call.queued", "call.ringing", "call.answered", "call.transferred", "call.tool_invoked", "call.completed"}
	reasons  = []string{"customer_hangup", "agent_hangup", "voicemail", "transfer", "error"}
	words    = []string{"customer", "asked", "about", "the", "invoice", "and", "agent", "confirmed",
		"refund", "policy", "order", "shipping", "delay", "apologised", "escalated", "ticket",
		"payment", "card", "declined", "retry", "successful", "account", "updated", "address"}
)

// JSON appends to dst a JSON document of about size bytes generated from
// seed and returns the extended slice. The document is at least size bytes
// long (for size >= 120) and at most about 400 bytes longer.
func JSON(dst []byte, size int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 0x1de3))
	start := len(dst)
	id := appendID(nil, r)
	dst = append(dst, `{"data":{"id":"call_`...)
	dst = append(dst, id...)
	dst = append(dst, `","object":"call","status":"`...)
	dst = append(dst, statuses[r.IntN(len(statuses))]...)
	dst = append(dst, `","created_at":"`...)
	dst = appendTime(dst, r)
	if size < 600 {
		return appendNote(append(dst, `","note":"`...), r, start, size-4, `"}}`)
	}
	dst = append(dst, `","updated_at":"`...)
	dst = appendTime(dst, r)
	dst = append(dst, `","direction":"outbound","from":"+1415555`...)
	dst = strconv.AppendInt(dst, int64(1000+r.IntN(9000)), 10)
	dst = append(dst, `","to":"+4420794`...)
	dst = strconv.AppendInt(dst, int64(10000+r.IntN(90000)), 10)
	dst = append(dst, `","agent_id":"agent_`...)
	dst = appendID(dst, r)
	dst = append(dst, `","duration_ms":`...)
	dst = strconv.AppendInt(dst, int64(r.IntN(900000)), 10)
	dst = append(dst, `,"cost":{"amount":`...)
	dst = strconv.AppendInt(dst, int64(r.IntN(50000)), 10)
	dst = append(dst, `,"currency":"usd"},"recording_url":"https://api.example.com/v1/calls/call_`...)
	dst = append(dst, id...)
	dst = append(dst, `/recording","transcript_url":"https://api.example.com/v1/calls/call_`...)
	dst = append(dst, id...)
	dst = append(dst, `/transcript","metadata":{"customer_id":"cus_`...)
	dst = appendID(dst, r)
	dst = append(dst, `","campaign":"renewal-q4"},"error":null,"ended_reason":"`...)
	dst = append(dst, reasons[r.IntN(len(reasons))]...)
	dst = append(dst, `","livemode":false,"events":[`...)
	for i := 0; len(dst)-start < size-4; i++ {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"id":"evt_`...)
		dst = appendID(dst, r)
		dst = append(dst, `","type":"`...)
		dst = append(dst, events[r.IntN(len(events))]...)
		dst = append(dst, `","created_at":"`...)
		dst = appendTime(dst, r)
		dst = append(dst, `","data":{"status":"`...)
		dst = append(dst, statuses[r.IntN(len(statuses))]...)
		dst = append(dst, `","previous_status":"`...)
		dst = append(dst, statuses[r.IntN(len(statuses))]...)
		dst = append(dst, `","latency_ms":`...)
		dst = strconv.AppendInt(dst, int64(r.IntN(2000)), 10)
		if r.IntN(3) == 0 {
			dst = append(dst, `,"summary":"`...)
			dst = appendNote(dst, r, 0, 0, `"`)
		}
		dst = append(dst, `},"request_id":null}`...)
	}
	return append(dst, "]}}"...)
}

// appendNote appends words until the document (which began at start) is at
// least size bytes long, at least three words, then closes it with end.
func appendNote(dst []byte, r *rand.Rand, start, size int, end string) []byte {
	for j := 0; j < 3 || len(dst)-start < size; j++ {
		if j > 0 {
			dst = append(dst, ' ')
		}
		dst = append(dst, words[r.IntN(len(words))]...)
	}
	return append(dst, end...)
}

const idAlphabet = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"

func appendID(dst []byte, r *rand.Rand) []byte {
	for i := 0; i < 14; i++ {
		dst = append(dst, idAlphabet[r.IntN(len(idAlphabet))])
	}
	return dst
}

func appendTime(dst []byte, r *rand.Rand) []byte {
	d, h, m, s := 1+r.IntN(28), r.IntN(24), r.IntN(60), r.IntN(60)
	return append(dst, '2', '0', '2', '6', '-', '1', '1', '-', byte('0'+d/10), byte('0'+d%10), 'T',
		byte('0'+h/10), byte('0'+h%10), ':', byte('0'+m/10), byte('0'+m%10), ':',
		byte('0'+s/10), byte('0'+s%10), 'Z')
}
