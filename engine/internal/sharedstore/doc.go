// Package sharedstore holds what the stores that many replicas share
// (packages redisstore and pgstore) do alike: their request counters, and
// how a Begin waits for a request in flight on another replica.
package sharedstore
