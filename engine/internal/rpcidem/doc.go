// Package rpcidem is what the gRPC and Connect adapters (packages idemgrpc
// and idemconnect) share: the contract for one unary call (Guard.Serve),
// the store policy by status code, the layout of an RPC's record, and the
// google.rpc.Status encoding of a stored error. It knows protobuf but no
// RPC framework, so that a record written by a gRPC server replays through
// a Connect handler of the same procedure and the other way round.
package rpcidem
