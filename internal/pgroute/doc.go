// Package pgroute routes tenant work to the right pool and binds the tenant
// inside each transaction: SET LOCAL search_path, statement_timeout and
// (defense in depth) ROLE, pipelined with the request's own statements, so
// every request is safe behind PgBouncer in transaction pooling mode and
// costs one network round trip (two for a transaction with Go logic between
// its statements).
//
// A tenant is looked up once per request: Router.Resolve reads it from an
// LRU cache (the catalog on a miss) and returns a context that carries it;
// Do and Tx on that context bind it without another lookup. The cached entry
// also holds the tenant's binding statements, built and quoted once.
package pgroute
