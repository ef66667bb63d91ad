// Package requestid carries an HTTP request's id in its context, so that the
// services it calls can put the id on their log lines: the HTTP layer stores
// it (With), loggers built with Hook add it to every event logged with
// .Ctx(ctx).
package requestid

import (
	"context"

	"github.com/rs/zerolog"
)

type key struct{}

// With returns ctx carrying the request id.
func With(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, key{}, id)
}

// From returns the request id in ctx, or "".
func From(ctx context.Context) string {
	if ctx == nil {
		return ""
	}
	id, _ := ctx.Value(key{}).(string)
	return id
}

// Hook adds request_id to events logged with a context that carries one:
// logger.Hook(requestid.Hook) … log.Info().Ctx(ctx).Msg(…).
var Hook zerolog.HookFunc = func(e *zerolog.Event, _ zerolog.Level, _ string) {
	if id := From(e.GetCtx()); id != "" {
		e.Str("request_id", id)
	}
}
