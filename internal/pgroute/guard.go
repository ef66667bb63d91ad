package pgroute

import (
	"fmt"
	"strings"

	lru "github.com/hashicorp/golang-lru/v2"
)

// The pooled path runs behind PgBouncer in transaction pooling mode, where
// anything that outlives the transaction (SET, PREPARE, LISTEN, session
// advisory locks, temp tables, …) leaks to whichever client gets that server
// connection next. Tenant code may therefore queue only single DML statements;
// binding the tenant (search_path, role, statement_timeout) is the router's job.
//
// checkStatement enforces that with a small lexer: exactly one statement, an
// allowed leading keyword, no session-level function. Validated SQL strings
// are cached, so the check costs a map lookup for the static SQL of the code.

var allowedLeading = map[string]bool{
	"select": true, "insert": true, "update": true, "delete": true, "with": true,
	"values": true, "table": true, "merge": true, "lock": true,
}

var sessionFunctions = map[string]bool{
	"set_config": true, "pg_advisory_lock": true, "pg_advisory_lock_shared": true,
	"pg_try_advisory_lock": true, "pg_try_advisory_lock_shared": true,
	"pg_advisory_unlock": true, "pg_advisory_unlock_shared": true, "pg_advisory_unlock_all": true,
	"dblink_connect": true, "pg_cancel_backend": true, "pg_terminate_backend": true,
}

// checked remembers statements that passed the check (an LRU: the code's
// SQL is a few hundred constant strings; anything built at run time ages out).
var checked = mustLRU[string, struct{}](4096)

func checkStatement(sql string) error {
	if checked.Contains(sql) {
		return nil
	}
	if err := lexCheck(sql); err != nil {
		return fmt.Errorf("%w: %v", ErrSessionStatement, err)
	}
	checked.Add(sql, struct{}{})
	return nil
}

func mustLRU[K comparable, V any](size int) *lru.Cache[K, V] {
	c, err := lru.New[K, V](size)
	if err != nil {
		panic(err)
	}
	return c
}

// lexCheck walks sql outside string literals, quoted identifiers, dollar
// quotes and comments.
func lexCheck(sql string) error {
	var first string
	statements := 0
	inStatement := false
	for i := 0; i < len(sql); {
		c := sql[i]
		switch {
		case c == '-' && i+1 < len(sql) && sql[i+1] == '-':
			// PostgreSQL ends a line comment at \n or \r.
			for i < len(sql) && sql[i] != '\n' && sql[i] != '\r' {
				i++
			}
			continue
		case c == '/' && i+1 < len(sql) && sql[i+1] == '*':
			depth := 0
			for i < len(sql) {
				if i+1 < len(sql) && sql[i] == '/' && sql[i+1] == '*' {
					depth++
					i += 2
				} else if i+1 < len(sql) && sql[i] == '*' && sql[i+1] == '/' {
					depth--
					i += 2
					if depth == 0 {
						break
					}
				} else {
					i++
				}
			}
			if depth != 0 {
				return fmt.Errorf("unterminated comment")
			}
			continue
		case c == '\'' || c == '"':
			// E'…' (an escape string: the E directly before the quote)
			// also ends no literal at a backslash-escaped quote.
			escapes := c == '\'' && i > 0 && (sql[i-1] == 'e' || sql[i-1] == 'E') && (i < 2 || !isIdentChar(sql[i-2]))
			j := i + 1
			for ; j < len(sql); j++ {
				if escapes && sql[j] == '\\' {
					j++
					continue
				}
				if sql[j] == c {
					if j+1 < len(sql) && sql[j+1] == c { // doubled quote
						j++
						continue
					}
					break
				}
			}
			if j >= len(sql) {
				return fmt.Errorf("unterminated quote")
			}
			if c == '"' {
				// A quoted identifier names a function as well as a bare
				// one does; U&"…" can spell any name with escapes.
				if i >= 2 && sql[i-1] == '&' && (sql[i-2] == 'u' || sql[i-2] == 'U') {
					return fmt.Errorf("U&\"…\" identifiers are not allowed")
				}
				if name := strings.ReplaceAll(sql[i+1:j], `""`, `"`); sessionFunctions[strings.ToLower(name)] {
					return fmt.Errorf("%s() is not allowed", name)
				}
			}
			i = j + 1
			markStatement(&inStatement, &statements)
			continue
		case c == '$':
			if tag, ok := dollarTag(sql[i:]); ok {
				end := strings.Index(sql[i+len(tag):], tag)
				if end < 0 {
					return fmt.Errorf("unterminated dollar quote")
				}
				i += len(tag) + end + len(tag)
				markStatement(&inStatement, &statements)
				continue
			}
			i++
			continue
		case c == ';':
			inStatement = false
			i++
			continue
		case isIdentStart(c):
			j := i
			for j < len(sql) && isIdentChar(sql[j]) {
				j++
			}
			word := strings.ToLower(sql[i:j])
			if !inStatement {
				markStatement(&inStatement, &statements)
				if statements > 1 {
					return fmt.Errorf("more than one statement")
				}
				first = word
				if !allowedLeading[word] {
					return fmt.Errorf("%q statements are not allowed", strings.ToUpper(word))
				}
			}
			if sessionFunctions[word] {
				return fmt.Errorf("%s() is not allowed", word)
			}
			i = j
			continue
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f':
			i++
			continue
		default:
			if !inStatement {
				markStatement(&inStatement, &statements)
				if statements > 1 {
					return fmt.Errorf("more than one statement")
				}
			}
			i++
		}
	}
	if statements > 1 {
		return fmt.Errorf("more than one statement")
	}
	if first == "" {
		return fmt.Errorf("empty statement")
	}
	return nil
}

func markStatement(in *bool, n *int) {
	if !*in {
		*in = true
		*n++
	}
}

// dollarTag returns the opening $tag$ at the start of s, if s starts with one.
func dollarTag(s string) (string, bool) {
	for j := 1; j < len(s); j++ {
		if s[j] == '$' {
			return s[:j+1], true
		}
		if !(isIdentChar(s[j]) && !(j == 1 && s[j] >= '0' && s[j] <= '9')) {
			return "", false // $1 parameter or stray dollar
		}
	}
	return "", false
}

func isIdentStart(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80
}

func isIdentChar(c byte) bool { return isIdentStart(c) || c >= '0' && c <= '9' || c == '$' }
