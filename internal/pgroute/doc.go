// Package pgroute routes tenant work to the right pool and binds the tenant
// inside each transaction: set_config('search_path', …, true) (and the
// tenant's statement_timeout and role) pipelined with the request's own
// statements, so every request is safe behind PgBouncer in transaction
// pooling mode and costs one network round trip (two for a transaction).
package pgroute
