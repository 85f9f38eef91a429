package redisstore

import "github.com/redis/go-redis/v9"

// Each record is one Redis hash, so every script touches one key and one
// hash slot (see keyOf). Its fields:
//
//	k    the encoded record.Key (to detect a digest collision)
//	st   "f" while a request holds or held the claim, "c" once completed
//	fp   the request fingerprint, "<version>:<sum>"
//	rid  the request id (of the claim, then of the stored response)
//	tok  the fencing token: 1 for the first claim, +1 at every takeover
//	lu   lease until, milliseconds of the Redis server's clock ("f" only)
//	att  the attempt number
//	ca   when the first attempt began (Unix nanoseconds, opaque to Redis)
//	own  the Store instance that holds or held the claim (diagnostics)
//	rec  the completed record, in package record's format ("c" only)
//
// Times come from the Redis server (TIME), so replicas with skewed clocks
// agree on when a lease has expired. The hash expires (PEXPIRE) TTL after
// the claim or the completion.
//
// Layout version 1. A hash without k or st is refused as damaged.

// beginScript answers Begin atomically.
//
//	KEYS[1]  the record
//	ARGV     fp, rid, lease ms, ttl ms, ca, k, own
//
// It returns one of
//
//	{"p", tok, att, ca}                    a new claim
//	{"p", tok, att, ca, rid, cpp, cpd}     a takeover of an expired lease
//	{"r", rec}                             replay
//	{"x", rid, rec}                        conflict with a completed record
//	{"xi", rid, att, ca, cpp, cpd}         conflict with an interrupted claim
//	{"w", rid, ms}                         in flight; lease ends in ms
var beginScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local h = redis.call('HMGET', KEYS[1], 'st', 'fp', 'rid', 'tok', 'lu', 'k', 'att', 'ca', 'cpp', 'cpd', 'rec')
local st = h[1]
if not st then
  if h[6] then
    return redis.error_reply('IDEMKV_DAMAGED record hash without a state')
  end
  redis.call('HSET', KEYS[1], 'k', ARGV[6], 'st', 'f', 'fp', ARGV[1], 'rid', ARGV[2], 'tok', 1,
    'lu', now + tonumber(ARGV[3]), 'att', 1, 'ca', ARGV[5], 'own', ARGV[7])
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  return {'p', 1, 1, ARGV[5]}
end
if h[6] ~= ARGV[6] then
  return redis.error_reply('IDEMKV_COLLISION')
end
if st == 'c' then
  if h[2] == ARGV[1] then return {'r', h[11] or ''} end
  return {'x', h[3] or '', h[11] or ''}
end
local lu = tonumber(h[5] or '0')
if lu > now then
  if h[2] ~= ARGV[1] then return {'x', h[3] or '', ''} end
  return {'w', h[3] or '', lu - now}
end
if h[2] ~= ARGV[1] then
  return {'xi', h[3] or '', h[7] or '0', h[8] or '0', h[9] or '', h[10] or ''}
end
local tok = tonumber(h[4]) + 1
local att = tonumber(h[7]) + 1
redis.call('HSET', KEYS[1], 'rid', ARGV[2], 'tok', tok, 'lu', now + tonumber(ARGV[3]), 'att', att, 'own', ARGV[7])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return {'p', tok, att, h[8] or '0', h[3] or '', h[9] or '', h[10] or ''}
`)

// completeScript stores a response if the caller still holds the claim
// (its token is current): the fence that stops a replica whose lease was
// taken over from overwriting the new holder's record.
//
//	KEYS[1]  the record
//	ARGV     tok, rec, ttl ms, rid
//
// It returns 1, or 0 if the claim is lost.
var completeScript = redis.NewScript(`
local h = redis.call('HMGET', KEYS[1], 'st', 'tok')
if h[1] ~= 'f' or tonumber(h[2]) ~= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'st', 'c', 'rec', ARGV[2], 'rid', ARGV[4])
redis.call('HDEL', KEYS[1], 'lu', 'cpp', 'cpd')
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
`)

// releaseScript deletes the claim if the caller still holds it.
//
//	KEYS[1]  the record
//	ARGV     tok
var releaseScript = redis.NewScript(`
local h = redis.call('HMGET', KEYS[1], 'st', 'tok')
if h[1] ~= 'f' or tonumber(h[2]) ~= tonumber(ARGV[1]) then return 0 end
redis.call('DEL', KEYS[1])
return 1
`)

// renewScript extends the lease if the caller still holds it.
//
//	KEYS[1]  the record
//	ARGV     tok, lease ms
var renewScript = redis.NewScript(`
local h = redis.call('HMGET', KEYS[1], 'st', 'tok')
if h[1] ~= 'f' or tonumber(h[2]) ~= tonumber(ARGV[1]) then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], 'lu', now + tonumber(ARGV[2]))
return 1
`)

// deleteScript deletes a record unless a live lease holds it.
//
//	KEYS[1]  the record
//
// It returns 1 (deleted), 0 (none) or -1 (in flight).
var deleteScript = redis.NewScript(`
local h = redis.call('HMGET', KEYS[1], 'st', 'lu')
if not h[1] then return redis.call('DEL', KEYS[1]) end
if h[1] == 'f' then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  if tonumber(h[2] or '0') > now then return -1 end
end
redis.call('DEL', KEYS[1])
return 1
`)

// checkpointScript records a recovery point, and renews the lease, if the
// caller still holds the claim.
//
//	KEYS[1]  the record
//	ARGV     tok, phase, data, lease ms
//
// It returns 1, or 0 if the claim is lost.
var checkpointScript = redis.NewScript(`
local h = redis.call('HMGET', KEYS[1], 'st', 'tok')
if h[1] ~= 'f' or tonumber(h[2]) ~= tonumber(ARGV[1]) then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], 'cpp', ARGV[2], 'cpd', ARGV[3], 'lu', now + tonumber(ARGV[4]))
return 1
`)
