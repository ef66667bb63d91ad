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

// sessionRelations are relations whose change is a session-level SET:
// UPDATE pg_settings SET setting = … is set_config(…, false).
var sessionRelations = map[string]bool{"pg_settings": true}

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
// quotes and comments, the way PostgreSQL's lexer does (with
// standard_conforming_strings on, which the pooled path requires): a "--"
// comment ends at a newline or a carriage return, E'…' strings take
// backslash escapes, and a quoted identifier names a function as its bare
// spelling does.
func lexCheck(sql string) error {
	var first string
	statements := 0
	inStatement := false
	// prevWord is the identifier that ended right at wordEnd: E'…' is an
	// escape string only when the E is a token of its own, touching the quote.
	prevWord, wordEnd := "", -1
	for i := 0; i < len(sql); {
		c := sql[i]
		switch {
		case c == '-' && i+1 < len(sql) && sql[i+1] == '-':
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
			escapes := c == '\'' && wordEnd == i && (prevWord == "e")
			end, text, err := quoted(sql, i, escapes)
			if err != nil {
				return err
			}
			if c == '"' && (sessionFunctions[text] || sessionRelations[text]) {
				return fmt.Errorf("%q is not allowed", text)
			}
			i = end
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
			if word == "u" && j+1 < len(sql) && sql[j] == '&' && (sql[j+1] == '\'' || sql[j+1] == '"') {
				// U&'…' and U&"…" spell characters as escapes: a name
				// could hide in them.
				return fmt.Errorf("unicode escape strings and identifiers are not allowed")
			}
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
			if sessionRelations[word] {
				return fmt.Errorf("%s is not allowed", word)
			}
			prevWord, wordEnd = word, j
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

// quoted reads the quoted string or identifier that starts at sql[i] (a
// single or double quote): a doubled quote stands for itself and, in an
// escape string, a backslash escapes the next byte. It returns the index
// after the closing quote and the text between the quotes, undoubled.
func quoted(sql string, i int, escapes bool) (int, string, error) {
	q := sql[i]
	var text strings.Builder
	for j := i + 1; j < len(sql); j++ {
		switch {
		case escapes && sql[j] == '\\':
			j++ // the escaped byte, whatever it is
			if j < len(sql) {
				text.WriteByte(sql[j])
			}
		case sql[j] == q && j+1 < len(sql) && sql[j+1] == q:
			text.WriteByte(q)
			j++
		case sql[j] == q:
			return j + 1, text.String(), nil
		default:
			text.WriteByte(sql[j])
		}
	}
	return 0, "", fmt.Errorf("unterminated quote")
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
