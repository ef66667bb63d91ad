package tenancy

// NotifyChannel is the PostgreSQL channel on which a change to a tenant's
// placement or status is announced (payload: the slug), so that every server
// process drops its cached placement at once (pgroute.Router.Listen).
const NotifyChannel = "publicdigit_tenants"

// NotifySQL announces a tenant change; run it in the transaction that makes
// the change, so the notice is delivered when (and only if) it commits:
//
//	tx.Exec(ctx, tenancy.NotifySQL, slug.String())
const NotifySQL = `SELECT pg_notify('` + NotifyChannel + `', $1)`
