package redisstore

import "github.com/redis/go-redis/v9"

// Layout 1: each record is one Redis hash, so every script touches one
// key and one hash slot (see keyOf). Layout 2 (layout.go), a string, is
// what a Store writes unless Options.Layout is 1; both are read, and a
// claim is completed, released and renewed by the scripts of the layout
// it was made in. The hash's fields:
//
//	k    the encoded record.Key (to detect a digest collision)
//	st   "f" while a request holds or held the claim, "c" once completed
//	fp   the request fingerprint, "<version>:<sum>"
//	rid  the request id (of the claim, then of the stored response)
//	cid  the claim id: the holding Store's random 128-bit id and a
//	     sequence number, unique across Stores and time; Complete,
//	     Release, renewals and checkpoints act only if it is theirs
//	tok  the attempt's token: 1 for the first claim, +1 at every takeover
//	lu   lease until, milliseconds of the Redis server's clock ("f" only)
//	att  the attempt number
//	ca   when the first attempt began (Unix nanoseconds, opaque to Redis)
//	prid the request id of the attempt this claim took over ("f" only)
//	cpp  the last recovery point's phase, cpd its data ("f" only)
//	rec  the completed record, in package record's format ("c" only)
//	w    set while a Begin waits for the claim ("f" only): its Complete
//	     or Release publishes the key (see waiting.go)
//
// The fence is cid and not tok: tok starts again at 1 when a hash is
// deleted (Release, Delete, expiry) and recreated, so a stale holder could
// match a later claim's token; a claim id is never reused.
//
// Times come from the Redis server (TIME), so replicas with skewed clocks
// agree on when a lease has expired. A claim's hash expires (PEXPIRE)
// Lease+TTL after the claim, its last renewal or checkpoint, so that it
// outlives its lease and an interrupted claim (and its recovery point)
// stays for a retry as long as a completed record would; a completed
// record expires TTL after its completion.
//
// Every script may run twice for one call: a client (go-redis by default)
// resends a command whose connection broke before the reply came. So each
// answers a repeat of its own call as it answered the call: a Begin that
// finds its own claim id answers with that claim again, a Complete with
// its own claim id on a completed record reports success, and so does a
// Release that finds no record.
//
// Layout version 1 (w is optional: a hash without it is read as before).
// A hash without k or st is refused as damaged. A fenced script of
// layout 1 (complete, release, renew, checkpoint) that finds a string
// answers 0, the claim lost: another claim, in layout 2, holds the key.

// beginScript answers Begin atomically.
//
//	KEYS[1]  the record
//	ARGV     fp, rid, lease ms, ttl ms, ca, k, cid, wait
//
// wait is "1" if the caller will wait for a request in flight: the record
// then gets the field w, which makes completeScript and releaseScript
// publish its key (see waiting.go).
//
// It returns one of
//
//	{"p", tok, att, ca}                    a new claim
//	{"p", tok, att, ca, rid, cpp, cpd}     a takeover of an expired lease
//	{"r", rec}                             replay
//	{"x", rid, rec}                        conflict with a completed record
//	{"xi", rid, att, ca, cpp, cpd, fp}     conflict with an interrupted claim
//	{"w", rid, ms}                         in flight; lease ends in ms
var beginScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local h = redis.call('HMGET', KEYS[1], 'st', 'fp', 'rid', 'tok', 'lu', 'k', 'att', 'ca', 'cpp', 'cpd', 'rec', 'cid', 'prid', 'w')
local st = h[1]
if not st then
  if h[6] then
    return redis.error_reply('IDEMKV_DAMAGED record hash without a state')
  end
  redis.call('HSET', KEYS[1], 'k', ARGV[6], 'st', 'f', 'fp', ARGV[1], 'rid', ARGV[2], 'tok', 1,
    'lu', now + tonumber(ARGV[3]), 'att', 1, 'ca', ARGV[5], 'cid', ARGV[7])
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]) + tonumber(ARGV[4]))
  return {'p', 1, 1, ARGV[5]}
end
if not h[6] then
  return redis.error_reply('IDEMKV_DAMAGED record hash without a key')
end
if h[6] ~= ARGV[6] then
  return redis.error_reply('IDEMKV_COLLISION')
end
if st == 'f' and h[12] == ARGV[7] then
  -- A repeat of this very call: answer with the claim it made.
  if h[13] then return {'p', h[4], h[7], h[8] or '0', h[13], h[9] or '', h[10] or ''} end
  return {'p', h[4], h[7], h[8] or '0'}
end
if st == 'c' then
  if h[2] == ARGV[1] then return {'r', h[11] or ''} end
  return {'x', h[3] or '', h[11] or ''}
end
local lu = tonumber(h[5] or '0')
if lu > now then
  if h[2] ~= ARGV[1] then return {'x', h[3] or '', ''} end
  if ARGV[8] == '1' and not h[14] then redis.call('HSET', KEYS[1], 'w', 1) end
  return {'w', h[3] or '', lu - now}
end
if h[2] ~= ARGV[1] then
  return {'xi', h[3] or '', h[7] or '0', h[8] or '0', h[9] or '', h[10] or '', h[2] or ''}
end
local tok = tonumber(h[4]) + 1
local att = tonumber(h[7]) + 1
redis.call('HSET', KEYS[1], 'rid', ARGV[2], 'tok', tok, 'lu', now + tonumber(ARGV[3]), 'att', att, 'cid', ARGV[7], 'prid', h[3] or '')
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]) + tonumber(ARGV[4]))
return {'p', tok, att, h[8] or '0', h[3] or '', h[9] or '', h[10] or ''}
`)

// completeScript stores a response if the caller still holds the claim
// (its claim id is current): the fence that stops a replica whose lease
// was taken over from overwriting the new holder's record.
//
//	KEYS[1]  the record
//	ARGV     cid, rec, ttl ms, rid, channel
//
// It returns 1, or 0 if the claim is lost. The claim id stays in the
// completed record, so that a repeat of the call is answered 1. If a
// waiter marked the record (w), the key is published on channel.
var completeScript = redis.NewScript(`
local h = redis.pcall('HMGET', KEYS[1], 'st', 'cid', 'w')
if h.err then return 0 end
if h[2] ~= ARGV[1] then return 0 end
if h[1] == 'c' then return 1 end
if h[1] ~= 'f' then return 0 end
redis.call('HSET', KEYS[1], 'st', 'c', 'rec', ARGV[2], 'rid', ARGV[4])
redis.call('HDEL', KEYS[1], 'lu', 'cpp', 'cpd', 'prid', 'w')
redis.call('PEXPIRE', KEYS[1], ARGV[3])
if h[3] then redis.call('PUBLISH', ARGV[5], KEYS[1]) end
return 1
`)

// releaseScript deletes the claim if the caller still holds it. A record
// that is gone counts as released: the key is free, whether this call (or
// its first run) freed it or a Delete or expiry did.
//
//	KEYS[1]  the record
//	ARGV     cid, channel
//
// If a waiter marked the record (w), the key is published on channel.
var releaseScript = redis.NewScript(`
local h = redis.pcall('HMGET', KEYS[1], 'st', 'cid', 'w')
if h.err then return 0 end
if not h[1] and not h[2] then return 1 end
if h[1] ~= 'f' or h[2] ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
if h[3] then redis.call('PUBLISH', ARGV[2], KEYS[1]) end
return 1
`)

// renewScript extends the lease if the caller still holds it.
//
//	KEYS[1]  the record
//	ARGV     cid, lease ms, ttl ms
var renewScript = redis.NewScript(`
local h = redis.pcall('HMGET', KEYS[1], 'st', 'cid')
if h.err then return 0 end
if h[1] ~= 'f' or h[2] ~= ARGV[1] then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], 'lu', now + tonumber(ARGV[2]))
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) + tonumber(ARGV[3]))
return 1
`)

// deleteScript deletes a record, in either layout, unless a live lease
// holds it.
//
//	KEYS[1]  the record
//	ARGV     k
//
// It returns 1 (deleted), 0 (none) or -1 (in flight). A record damaged
// beyond reading its key is deleted.
var deleteScript = redis.NewScript(`
local t = redis.call('TYPE', KEYS[1])['ok']
if t == 'none' then return 0 end
local st, k, left
if t == 'hash' then
  local h = redis.call('HMGET', KEYS[1], 'st', 'lu', 'k')
  st, k = h[1], h[3]
  if st == 'f' then
    local t = redis.call('TIME')
    local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    left = tonumber(h[2] or '0') - now
  end
elseif t == 'string' then
  local v = redis.call('GET', KEYS[1])
  local kl = tonumber(string.sub(v, 64, 67), 16)
  local ttl = tonumber(string.sub(v, 52, 63), 16)
  if string.sub(v, 1, 1) == '2' and kl and ttl and #v >= 71 + kl then
    st, k = string.sub(v, 2, 2), string.sub(v, 68, 67 + kl)
    if st == 'f' then left = redis.call('PTTL', KEYS[1]) - ttl end
  end
end
if not k then return redis.call('DEL', KEYS[1]) end -- damaged: remove it
if k ~= ARGV[1] then return redis.error_reply('IDEMKV_COLLISION') end
if st == 'f' and left > 0 then return -1 end
redis.call('DEL', KEYS[1])
return 1
`)

// dropScript deletes a damaged record (layout 2) if it is still the
// value the caller read.
//
//	KEYS[1]  the record
//	ARGV     the value
var dropScript = redis.NewScript(`
local v = redis.pcall('GET', KEYS[1])
if v ~= ARGV[1] then return 0 end
return redis.call('DEL', KEYS[1])
`)

// checkpointScript records a recovery point, and renews the lease, if the
// caller still holds the claim and its lease has not run out (as the
// embedded engine: a point recorded after the lease ended could race a
// takeover).
//
//	KEYS[1]  the record
//	ARGV     cid, phase, data, lease ms, ttl ms
//
// It returns 1, or 0 if the claim is lost.
var checkpointScript = redis.NewScript(`
local h = redis.pcall('HMGET', KEYS[1], 'st', 'cid', 'lu')
if h.err then return 0 end
if h[1] ~= 'f' or h[2] ~= ARGV[1] then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if tonumber(h[3] or '0') <= now then return 0 end
redis.call('HSET', KEYS[1], 'cpp', ARGV[2], 'cpd', ARGV[3], 'lu', now + tonumber(ARGV[4]))
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[4]) + tonumber(ARGV[5]))
return 1
`)

// The scripts of layout 2 (layout.go). They read the fixed header with
// GETRANGE (a hash there answers an error, caught: another claim, in
// layout 1, holds the key) and compare the claim id at bytes 3..50 (Lua's
// 4..51); a claim's lease ends ttl (bytes 51..62) before its key expires.

// lookScript returns the record and, for a claim, how long its lease
// still runs (ms; 0 or less if it has run out). If wait is "1" and the
// lease runs, it sets the record's w byte, so that the claim's Complete or
// Release publishes its key.
//
//	KEYS[1]  the record
//	ARGV     wait
//
// It returns {} (no record), {"h"} (a hash: layout 1) or {value, left}.
var lookScript = redis.NewScript(`
local v = redis.pcall('GET', KEYS[1])
if type(v) == 'table' and v.err then return {'h'} end
if not v then return {} end
if string.sub(v, 2, 2) ~= 'f' then return {v, 0} end
local ttl = tonumber(string.sub(v, 52, 63), 16)
local pt = redis.call('PTTL', KEYS[1])
if not ttl or pt < 0 then return redis.error_reply('IDEMKV_DAMAGED claim without an expiry') end
local left = pt - ttl
if left > 0 and ARGV[1] == '1' and string.sub(v, 3, 3) == '0' then
  redis.call('SETRANGE', KEYS[1], 2, '1')
end
return {v, left}
`)

// claimScript is SET KEYS[1] ARGV[1] NX GET PX ARGV[2] for servers
// before Redis 7.0, which refuse NX with GET.
var claimScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v then return v end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
`)

// takeoverScript replaces a claim whose lease has run out by a new one,
// if the claim is still the one the caller read (its claim id): a
// compare-and-set, so that of two replicas that read the same expired
// claim, one takes it over. The w byte is kept.
//
//	KEYS[1]  the record
//	ARGV     old cid, new value, ms (lease+ttl), new cid
//
// It returns 1, or 0 if the record changed (the caller reads it again).
var takeoverScript = redis.NewScript(`
local h = redis.pcall('GETRANGE', KEYS[1], 0, 62)
if type(h) == 'table' or #h < 63 then return 0 end
local cid = string.sub(h, 4, 51)
if cid == ARGV[4] then return 1 end -- a repeat of this very call
if cid ~= ARGV[1] or string.sub(h, 2, 2) ~= 'f' then return 0 end
if redis.call('PTTL', KEYS[1]) - tonumber(string.sub(h, 52, 63), 16) > 0 then return 0 end
redis.call('SET', KEYS[1], string.sub(ARGV[2], 1, 2) .. string.sub(h, 3, 3) .. string.sub(ARGV[2], 4), 'PX', ARGV[3])
return 1
`)

// complete2Script stores the completed record if the caller still holds
// the claim. A repeat of the call finds its claim id in the completed
// record and is answered 1.
//
//	KEYS[1]  the record
//	ARGV     cid, value, ms (ttl), channel
var complete2Script = redis.NewScript(`
local h = redis.pcall('GETRANGE', KEYS[1], 0, 50)
if type(h) == 'table' or string.sub(h, 4, 51) ~= ARGV[1] then return 0 end
if string.sub(h, 2, 2) == 'c' then return 1 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
if string.sub(h, 3, 3) == '1' then redis.call('PUBLISH', ARGV[4], KEYS[1]) end
return 1
`)

// release2Script deletes the claim if the caller still holds it; a record
// that is gone counts as released.
//
//	KEYS[1]  the record
//	ARGV     cid, channel
var release2Script = redis.NewScript(`
local h = redis.pcall('GETRANGE', KEYS[1], 0, 50)
if type(h) == 'table' then return 0 end
if h == '' then return 1 end
if string.sub(h, 2, 2) ~= 'f' or string.sub(h, 4, 51) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
if string.sub(h, 3, 3) == '1' then redis.call('PUBLISH', ARGV[2], KEYS[1]) end
return 1
`)

// renew2Script extends the lease if the caller still holds the claim.
//
//	KEYS[1]  the record
//	ARGV     cid, ms (lease+ttl)
var renew2Script = redis.NewScript(`
local h = redis.pcall('GETRANGE', KEYS[1], 0, 50)
if type(h) == 'table' or string.sub(h, 2, 2) ~= 'f' or string.sub(h, 4, 51) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
`)

// checkpoint2Script replaces the claim by the caller's value carrying a
// recovery point, and renews the lease, if the caller still holds the
// claim and its lease has not run out. The w byte is kept.
//
//	KEYS[1]  the record
//	ARGV     cid, value, ms (lease+ttl)
var checkpoint2Script = redis.NewScript(`
local h = redis.pcall('GETRANGE', KEYS[1], 0, 62)
if type(h) == 'table' or string.sub(h, 2, 2) ~= 'f' or string.sub(h, 4, 51) ~= ARGV[1] then return 0 end
if redis.call('PTTL', KEYS[1]) - tonumber(string.sub(h, 52, 63), 16) <= 0 then return 0 end
redis.call('SET', KEYS[1], string.sub(ARGV[2], 1, 2) .. string.sub(h, 3, 3) .. string.sub(ARGV[2], 4), 'PX', ARGV[3])
return 1
`)
