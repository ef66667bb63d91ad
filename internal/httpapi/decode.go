package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"
)

// DecodeJSON decodes the request body into v strictly: the content type must
// be application/json, unknown fields are refused, and the body must hold
// exactly one JSON object. Failures are 400 (415 for another content type)
// problems whose detail is safe to show.
func DecodeJSON(c *fiber.Ctx, v any) error {
	if ct := c.Get(fiber.HeaderContentType); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != fiber.MIMEApplicationJSON {
			p := problem(fiber.StatusUnsupportedMediaType, "unsupported media type", "send the body as application/json")
			p.Code = "unsupported_media_type"
			return p
		}
	}
	body := c.Body()
	if trimmed := bytes.TrimSpace(body); len(trimmed) == 0 || trimmed[0] != '{' {
		// Every body is an object (json would take null as an empty one).
		return BadRequest("the request body must be a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return BadRequest(jsonProblem(err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return BadRequest("the request body must hold exactly one JSON value")
	}
	return nil
}

// jsonProblem describes a decoding error without echoing Go type names.
func jsonProblem(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	var pe *time.ParseError
	switch {
	case errors.As(err, &pe):
		return "a time must be written in RFC 3339, e.g. 2030-01-31T00:00:00Z"
	case errors.As(err, &se):
		return fmt.Sprintf("malformed JSON at byte %d", se.Offset)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "malformed JSON: unexpected end of the body"
	case errors.As(err, &te):
		if te.Field != "" {
			return fmt.Sprintf("field %s must be a JSON %s", te.Field, jsonKind(te.Type.Kind().String()))
		}
		return "the request body must be a JSON object"
	}
	const unknown = "json: unknown field "
	if msg := err.Error(); len(msg) > len(unknown) && msg[:len(unknown)] == unknown {
		return "unknown field " + msg[len(unknown):]
	}
	return "malformed JSON"
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "string"
	case "bool":
		return "boolean"
	case "slice", "array":
		return "array"
	case "map", "struct", "ptr":
		return "object"
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64", "float32", "float64":
		return "number"
	}
	return "value of another type"
}

// QueryInt parses an optional integer query parameter within [min, max];
// absent gives def.
func QueryInt(c *fiber.Ctx, name string, def, min, max int) (int, error) {
	raw := c.Query(name)
	if raw == "" {
		return def, nil
	}
	n, err := strconv.Atoi(raw)
	if err != nil || n < min || n > max {
		return 0, BadRequest(fmt.Sprintf("query parameter %s must be an integer between %d and %d", name, min, max))
	}
	return n, nil
}

// QueryBool parses an optional boolean query parameter (true/false/1/0).
func QueryBool(c *fiber.Ctx, name string) (bool, error) {
	raw := c.Query(name)
	if raw == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(raw)
	if err != nil {
		return false, BadRequest(fmt.Sprintf("query parameter %s must be true or false", name))
	}
	return b, nil
}
