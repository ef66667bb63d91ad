package requestid_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"

	"github.com/publicdigit/publicdigit/internal/requestid"
)

func TestHookAddsTheRequestID(t *testing.T) {
	var buf bytes.Buffer
	log := zerolog.New(&buf).Hook(requestid.Hook)
	ctx := requestid.With(context.Background(), "abc123def456")
	log.Info().Ctx(ctx).Msg("with")
	log.Info().Ctx(context.Background()).Msg("without")
	log.Info().Msg("no context")
	assert.Equal(t, `{"level":"info","request_id":"abc123def456","message":"with"}`+"\n"+
		`{"level":"info","message":"without"}`+"\n"+`{"level":"info","message":"no context"}`+"\n", buf.String())
	assert.Equal(t, "abc123def456", requestid.From(ctx))
	assert.Empty(t, requestid.From(context.Background()))
}
