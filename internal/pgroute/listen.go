package pgroute

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/publicdigit/publicdigit/internal/tenant"
)

// Listen keeps a direct connection (LISTEN is a session feature, so never
// through PgBouncer) listening on tenant.NotifyChannel, and drops the cached
// placement of every tenant announced there, until ctx ends. After a lost
// connection it reconnects with backoff and drops every cached placement,
// since notices may have been missed meanwhile. While it listens, tenants
// it resolved are trusted for Options.ListenCacheTTL instead of CacheTTL.
// ready, if not nil, is closed once the first LISTEN is in place.
func (r *Router) Listen(ctx context.Context, url string, ready chan<- struct{}) {
	backoff := 100 * time.Millisecond
	first := true
	for ctx.Err() == nil {
		err := r.listenOnce(ctx, url, func() {
			r.cache.listening()
			if first && ready != nil {
				close(ready)
			}
			if !first {
				r.InvalidateAll()
				r.notified(tenant.Slug{})
			}
			first = false
			backoff = 100 * time.Millisecond
		})
		r.cache.unheard()
		if ctx.Err() != nil {
			return
		}
		r.o.Log.Warn().Err(err).Dur("retry_in", backoff).Msg("tenant change listener lost its connection")
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		if backoff < 10*time.Second {
			backoff *= 2
		}
	}
}

func (r *Router) listenOnce(ctx context.Context, url string, listening func()) error {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return err
	}
	cfg.RuntimeParams["application_name"] = r.o.Pool.ApplicationName + "-listen"
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.o.ListenCheck)
		defer cancel()
		_ = conn.Close(cctx) // bounded: the connection may be the one that hangs
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{tenant.NotifyChannel}.Sanitize()); err != nil {
		return err
	}
	listening()
	for {
		// A quiet connection is checked every ListenCheck: one that hangs
		// unnoticed (a peer gone without a reset) would otherwise keep
		// placements trusted for ListenCacheTTL with no notice reaching them.
		wctx, cancel := context.WithTimeout(ctx, r.o.ListenCheck)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		if err != nil && pgconn.Timeout(err) && ctx.Err() == nil {
			pctx, cancel := context.WithTimeout(ctx, r.o.ListenCheck)
			err = conn.Ping(pctx)
			cancel()
			if err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		slug, err := tenant.ParseSlug(n.Payload)
		if err != nil {
			r.InvalidateAll()
			r.notified(tenant.Slug{})
			continue
		}
		r.Invalidate(slug)
		r.notified(slug)
		r.o.Log.Debug().Str("tenant", slug.String()).Msg("tenant changed: placement dropped from cache")
	}
}

// notified passes a change heard on the channel to Options.OnNotify (a zero
// slug: any tenant may have changed).
func (r *Router) notified(slug tenant.Slug) {
	if r.o.OnNotify != nil {
		r.o.OnNotify(slug)
	}
}
