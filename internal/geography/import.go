package geography

import (
	"github.com/publicdigit/publicdigit/internal/apperr"

	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
)

// ErrInvalidImport is wrapped by *ImportError.
var ErrInvalidImport = apperr.New("invalid_import", "invalid geography import")

// ImportError lists every problem of an import file, each with its line.
type ImportError struct {
	Problems []string
}

func (e *ImportError) Error() string {
	const show = 20
	p := e.Problems
	more := ""
	if len(p) > show {
		more = fmt.Sprintf("; and %d more", len(p)-show)
		p = p[:show]
	}
	return fmt.Sprintf("%s: %s%s", ErrInvalidImport, strings.Join(p, "; "), more)
}

// Unwrap makes errors.Is(err, ErrInvalidImport) true.
func (e *ImportError) Unwrap() error { return ErrInvalidImport }

// ImportResult counts what an import did.
type ImportResult struct {
	Created   int `json:"created"`
	Updated   int `json:"updated"`
	Unchanged int `json:"unchanged"`
}

// MaxImportRows bounds one import file.
const MaxImportRows = 200_000

var (
	codePattern  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)
	levelPattern = regexp.MustCompile(`^[a-z][a-z0-9_]{0,49}$`)
)

type importRow struct {
	line                     int
	code, name, level, pcode string
}

// Import loads units from CSV with a header naming the columns code, name,
// level and, optionally, parent_code (empty for a root); other columns are
// refused. Parents may be in the file (in any order) or already in the
// catalog. A code already in the catalog updates that unit's name and
// level; moving a unit to another parent is refused. The file is checked
// whole before anything is written, every problem reported with its line,
// and loaded in one transaction: all or nothing. Import needs a connection
// allowed to use the table's identity sequence (the direct admin pool).
func (s *Store) Import(ctx context.Context, r io.Reader) (ImportResult, error) {
	rows, err := readCSV(r)
	if err != nil {
		return ImportResult{}, err
	}
	tx, err := s.db.Begin(ctx)
	if err != nil {
		return ImportResult{}, fmt.Errorf("import: %w", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // no-op after commit
	// Writers wait (another import); readers go on.
	if _, err := tx.Exec(ctx, `LOCK TABLE landlord.geo_administrative_units IN SHARE ROW EXCLUSIVE MODE`); err != nil {
		return ImportResult{}, fmt.Errorf("import: lock: %w", err)
	}
	have, err := unitsNamed(ctx, tx, rows)
	if err != nil {
		return ImportResult{}, err
	}
	p := newImportPlan(rows, have)
	p.resolveParents(rows)
	p.orderByDepth()
	if len(p.problems) > 0 {
		return ImportResult{}, &ImportError{Problems: p.problems}
	}
	res, err := p.write(ctx, tx)
	if err != nil {
		return ImportResult{}, err
	}
	if err := tx.Commit(ctx); err != nil {
		return ImportResult{}, fmt.Errorf("import: commit: %w", err)
	}
	return res, nil
}

// existingUnit is a unit of the catalog, with its parent's code ("" for a root).
type existingUnit struct {
	id       int64
	name     string
	level    string
	path     string
	parentID *int64
	pcode    string
}

// unitsNamed returns, by code, the units of the catalog that the file names
// as a code or a parent_code.
func unitsNamed(ctx context.Context, tx pgx.Tx, rows []importRow) (map[string]existingUnit, error) {
	codes := make([]string, 0, 2*len(rows))
	for _, r := range rows {
		codes = append(codes, r.code)
		if r.pcode != "" {
			codes = append(codes, r.pcode)
		}
	}
	have := map[string]existingUnit{}
	q, err := tx.Query(ctx, `SELECT u.code, u.id, u.name, u.level, u.path::text, u.parent_id, coalesce(p.code, '')
		FROM landlord.geo_administrative_units u LEFT JOIN landlord.geo_administrative_units p ON p.id = u.parent_id
		WHERE u.code = ANY($1)`, codes)
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	defer q.Close()
	for q.Next() {
		var c string
		var e existingUnit
		if err := q.Scan(&c, &e.id, &e.name, &e.level, &e.path, &e.parentID, &e.pcode); err != nil {
			return nil, fmt.Errorf("import: %w", err)
		}
		have[c] = e
	}
	if err := q.Err(); err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	return have, nil
}

// importPlan is what an import will write, worked out from the file and the
// units of the catalog it names, with every problem found on the way.
type importPlan struct {
	have      map[string]existingUnit
	inFile    map[string]importRow
	paths     map[string]string // code → path, of the units in the catalog and (once written) the new ones
	fresh     []importRow       // new units, in file order
	ordered   []importRow       // the same, parents first
	updIDs    []int64           // units whose name or level changes
	updNames  []string
	updLevels []string
	unchanged int
	problems  []string
}

func newImportPlan(rows []importRow, have map[string]existingUnit) *importPlan {
	p := &importPlan{have: have, inFile: map[string]importRow{}}
	for _, r := range rows {
		p.inFile[r.code] = r
	}
	return p
}

// resolveParents checks that each row's parent is in the file or in the
// catalog, and sorts the rows into new units, updates and unchanged units;
// a unit of the catalog keeps its parent.
func (p *importPlan) resolveParents(rows []importRow) {
	for _, r := range rows {
		if r.pcode != "" {
			_, inDB := p.have[r.pcode]
			if _, ok := p.inFile[r.pcode]; !ok && !inDB {
				p.problems = append(p.problems, fmt.Sprintf("line %d: parent_code %q is neither in the file nor in the catalog", r.line, r.pcode))
				continue
			}
		}
		e, ok := p.have[r.code]
		if !ok {
			p.fresh = append(p.fresh, r)
			continue
		}
		if e.pcode != r.pcode {
			p.problems = append(p.problems, fmt.Sprintf("line %d: %s is already under %q; moving a unit is not supported",
				r.line, r.code, e.pcode))
			continue
		}
		if e.name == r.name && e.level == r.level {
			p.unchanged++
			continue
		}
		p.updIDs, p.updNames, p.updLevels = append(p.updIDs, e.id), append(p.updNames, r.name), append(p.updLevels, r.level)
	}
}

// orderByDepth orders the new units parents first. Topological order: a new
// unit after its new parent; a cycle never resolves.
func (p *importPlan) orderByDepth() {
	p.paths = map[string]string{}
	for c, e := range p.have {
		p.paths[c] = e.path
	}
	pending := p.fresh
	for len(pending) > 0 {
		var next []importRow
		for _, r := range pending {
			if _, ok := p.paths[r.pcode]; r.pcode == "" || ok {
				p.ordered = append(p.ordered, r)
				p.paths[r.code] = "?" // placeholder: known once its id is reserved
			} else {
				next = append(next, r)
			}
		}
		if len(next) == len(pending) {
			for _, r := range next {
				if _, bad := p.inFile[r.pcode]; bad {
					p.problems = append(p.problems, fmt.Sprintf("line %d: %s is part of a parent cycle", r.line, r.code))
				}
			}
			break
		}
		pending = next
	}
}

// write inserts the new units and updates the changed ones in tx, and
// counts what it did.
func (p *importPlan) write(ctx context.Context, tx pgx.Tx) (ImportResult, error) {
	res := ImportResult{Unchanged: p.unchanged}
	var err error
	if len(p.ordered) > 0 {
		if res.Created, err = p.insert(ctx, tx); err != nil {
			return ImportResult{}, err
		}
	}
	if len(p.updIDs) > 0 {
		tag, err := tx.Exec(ctx, `UPDATE landlord.geo_administrative_units g SET name = u.name, level = u.level
			FROM unnest($1::bigint[], $2::text[], $3::text[]) AS u(id, name, level) WHERE g.id = u.id`,
			p.updIDs, p.updNames, p.updLevels)
		if err != nil {
			return ImportResult{}, fmt.Errorf("import: update: %w", err)
		}
		res.Updated = int(tag.RowsAffected())
	}
	return res, nil
}

// insert gives the new units their ids and paths, parents first, and
// inserts them in one statement; it returns how many it inserted.
func (p *importPlan) insert(ctx context.Context, tx pgx.Tx) (int, error) {
	ids, err := reserveIDs(ctx, tx, len(p.ordered))
	if err != nil {
		return 0, err
	}
	idOf := map[string]int64{}
	for c, e := range p.have {
		idOf[c] = e.id
	}
	n := len(p.ordered)
	colID, colCode, colName, colLevel, colPath := make([]int64, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	colParent := make([]*int64, n)
	for i, r := range p.ordered {
		id := ids[i]
		idOf[r.code] = id
		path := strconv.FormatInt(id, 10)
		if r.pcode != "" {
			pid := idOf[r.pcode]
			colParent[i] = &pid
			path = p.paths[r.pcode] + "." + path
		}
		p.paths[r.code] = path
		colID[i], colCode[i], colName[i], colLevel[i], colPath[i] = id, r.code, r.name, r.level, path
	}
	tag, err := tx.Exec(ctx, `INSERT INTO landlord.geo_administrative_units (id, parent_id, code, name, level, path)
		SELECT u.id, u.parent_id, u.code, u.name, u.level, u.path::public.ltree
		  FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[])
		       AS u(id, parent_id, code, name, level, path)`,
		colID, colParent, colCode, colName, colLevel, colPath)
	if err != nil {
		return 0, fmt.Errorf("import: insert: %w", err)
	}
	return int(tag.RowsAffected()), nil
}

// reserveIDs takes n ids from the table's identity sequence.
func reserveIDs(ctx context.Context, tx pgx.Tx, n int) ([]int64, error) {
	ids := make([]int64, 0, n)
	q, err := tx.Query(ctx, `SELECT nextval(pg_get_serial_sequence('landlord.geo_administrative_units', 'id'))
		FROM generate_series(1, $1)`, n)
	if err != nil {
		return nil, fmt.Errorf("import: reserve ids: %w", err)
	}
	defer q.Close()
	for q.Next() {
		var id int64
		if err := q.Scan(&id); err != nil {
			return nil, fmt.Errorf("import: reserve ids: %w", err)
		}
		ids = append(ids, id)
	}
	if err := q.Err(); err != nil {
		return nil, fmt.Errorf("import: reserve ids: %w", err)
	}
	return ids, nil
}

// readCSV parses and checks the file, reporting every problem with its line.
func readCSV(r io.Reader) ([]importRow, error) {
	cr := csv.NewReader(r)
	cr.ReuseRecord = false
	col, err := readHeader(cr)
	if err != nil {
		return nil, err
	}
	var rows []importRow
	var problems []string
	seen := map[string]int{}
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		line, _ := cr.FieldPos(0)
		if err != nil {
			problems = append(problems, err.Error())
			if len(problems) > 100 {
				break
			}
			continue
		}
		if len(rows) >= MaxImportRows {
			problems = append(problems, fmt.Sprintf("more than %d rows", MaxImportRows))
			break
		}
		r := rowOf(rec, col, line)
		problems = append(problems, checkRow(r, seen)...)
		rows = append(rows, r)
	}
	if len(problems) > 0 {
		return nil, &ImportError{Problems: problems}
	}
	if len(rows) == 0 {
		return nil, &ImportError{Problems: []string{"no units after the header"}}
	}
	return rows, nil
}

// rowOf is the record rec, found on line, as a row; a column the header
// does not name (parent_code) is empty.
func rowOf(rec []string, col map[string]int, line int) importRow {
	field := func(name string) string {
		i, ok := col[name]
		if !ok {
			return ""
		}
		return strings.TrimSpace(rec[i])
	}
	return importRow{line: line, code: field("code"), name: field("name"),
		level: field("level"), pcode: field("parent_code")}
}

// readHeader reads the header line and returns the column of each name.
func readHeader(cr *csv.Reader) (map[string]int, error) {
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return nil, &ImportError{Problems: []string{"the file is empty (want a header: code,name,level,parent_code)"}}
	}
	if err != nil {
		return nil, &ImportError{Problems: []string{"header: " + err.Error()}}
	}
	col := map[string]int{}
	var problems []string
	for i, h := range header {
		h = strings.ToLower(strings.TrimSpace(strings.TrimPrefix(h, "\ufeff")))
		switch h {
		case "code", "name", "level", "parent_code":
			if _, dup := col[h]; dup {
				problems = append(problems, fmt.Sprintf("line 1: column %s appears twice", h))
			}
			col[h] = i
		default:
			problems = append(problems, fmt.Sprintf("line 1: unknown column %q (want code, name, level, parent_code)", h))
		}
	}
	for _, need := range []string{"code", "name", "level"} {
		if _, ok := col[need]; !ok {
			problems = append(problems, "line 1: missing column "+need)
		}
	}
	if len(problems) > 0 {
		return nil, &ImportError{Problems: problems}
	}
	return col, nil
}

// checkRow returns the problems of one row. seen maps the codes of the rows
// before it to their lines; checkRow adds the row's own.
func checkRow(r importRow, seen map[string]int) []string {
	var problems []string
	line := r.line
	if !codePattern.MatchString(r.code) {
		problems = append(problems, fmt.Sprintf("line %d: code %q must be 1 to 64 of A-Z, a-z, 0-9, _ . - (starting with a letter or digit)", line, r.code))
	} else if prev, dup := seen[r.code]; dup {
		problems = append(problems, fmt.Sprintf("line %d: code %s already on line %d", line, r.code, prev))
	}
	seen[r.code] = line
	if n := utf8.RuneCountInString(r.name); n < 1 || n > 200 || strings.IndexFunc(r.name, unicode.IsControl) >= 0 {
		problems = append(problems, fmt.Sprintf("line %d: name must be 1 to 200 characters without control characters", line))
	}
	if !levelPattern.MatchString(r.level) {
		problems = append(problems, fmt.Sprintf("line %d: level %q must match ^[a-z][a-z0-9_]{0,49}$", line, r.level))
	}
	if r.pcode == r.code && r.code != "" {
		problems = append(problems, fmt.Sprintf("line %d: %s cannot be its own parent", line, r.code))
	}
	return problems
}
