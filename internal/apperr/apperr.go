// Package apperr is the project's error vocabulary. Every error that may
// reach a client is a Kind: a sentinel with a stable, machine-readable code
// (e.g. "tenant_not_found"). Packages declare their kinds with New, wrap them
// with %w and a short context, and callers branch with errors.Is. The HTTP
// layer maps codes to statuses in one table (internal/httpapi/errors.go);
// the CLI prints the code next to the message.
//
// apperr imports nothing of the project, so every package may use it.
package apperr

import "errors"

// Kind is one kind of error: a sentinel with a stable code. Compare kinds
// with errors.Is; read the code of any error with CodeOf.
type Kind struct {
	code string
	msg  string
}

// New declares a kind. code is lower_snake_case and never changes once
// published (clients match on it); msg is the default text, safe to show a
// client.
func New(code, msg string) *Kind { return &Kind{code: code, msg: msg} }

// Error returns the kind's text.
func (k *Kind) Error() string { return k.msg }

// Code returns the kind's stable code.
func (k *Kind) Code() string { return k.code }

// KindOf returns the first Kind in err's chain (depth first, as errors.As
// walks it), or nil.
func KindOf(err error) *Kind {
	var k *Kind
	if errors.As(err, &k) {
		return k
	}
	return nil
}

// CodeOf returns the code of the first Kind in err's chain, or "" for an
// error of no known kind (an internal error).
func CodeOf(err error) string {
	if k := KindOf(err); k != nil {
		return k.code
	}
	return ""
}
