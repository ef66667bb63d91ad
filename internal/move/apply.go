package move

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/rs/zerolog"
)

// The applier reads a logical replication slot (pgoutput, protocol 1, the
// values as text) and applies the changes to the target tables in commit
// order: the transactions waiting when it looks, several source
// transactions per target transaction (one pipeline, one implicit
// transaction), each change by key with a prepared statement whose
// parameters the target parses from the same text. An UPDATE or DELETE
// that does not find its row, or an INSERT that collides, stops the move:
// the target would differ from the source.
//
// Markers are transactional logical decoding messages the mover emits on
// the source (pg_logical_emit_message) with the slot's name as prefix: a
// marker is applied once every transaction committed before it is, which is
// how the mover knows the target has caught up to a point.

const (
	// maxBatchChanges bounds the changes applied in one target transaction.
	maxBatchChanges = 5000
	// maxStatements bounds the prepared statements kept on the target.
	maxStatements = 512
	// statusInterval is how often the applier confirms its position to the
	// source even when idle (the slot then releases WAL, and the server
	// does not time the connection out).
	statusInterval = time.Second
)

// relation is a source table as the stream describes it, mapped to the
// target.
type relation struct {
	name    string   // table name (same on both sides)
	ident   string   // quoted target table
	columns []string // quoted column names, in the stream's order
	names   []string // the same, unquoted
	key     []int    // positions of the key columns
}

// change is one row change (or a truncate) of a transaction.
type change struct {
	op       byte // 'I', 'U', 'D', 'T'
	rel      *relation
	new, old []*pglogrepl.TupleDataColumn // old: the key (or whole old row), when sent
	truncate []*relation
	option   uint8 // truncate: 1 cascade, 2 restart identity
}

// txn is one source transaction.
type txn struct {
	final      pglogrepl.LSN // LSN of its commit record
	end        pglogrepl.LSN // end of its commit record
	commitTime time.Time
	changes    []change
	markers    []string
}

// event is what the reader hands the applier: a decoded message, a
// keepalive, or the error that ended the stream.
type event struct {
	msg       pglogrepl.Message
	keepalive bool
	walEnd    pglogrepl.LSN
	reply     bool
	err       error
}

// checkpoint asks the applier to stop between the transactions that
// committed before lsn and the others, and to run fn there.
type checkpoint struct {
	lsn    pglogrepl.LSN
	marker string
	fn     func() error
	done   chan error
	// What was applied since the previous checkpoint: the keys touched and
	// the tables truncated (nil at the first one). Read after done.
	touched   map[string]*keySet
	truncated map[string]bool
}

// keySet is the keys of the rows a table's changes touched.
type keySet struct {
	columns []string            // key column names
	keys    map[string][]string // encoded key → key values (text)
}

type applier struct {
	repl   *pgconn.PgConn
	dst    *pgconn.PgConn
	from   string // source schema
	to     string // target schema
	prefix string // marker prefix: the slot's name
	log    zerolog.Logger

	cancel context.CancelFunc
	reader sync.WaitGroup
	events chan event
	wake   chan struct{}
	done   chan struct{}
	err    error // why run ended; read after done

	// Owned by the run goroutine.
	rels    map[uint32]*relation
	open    *txn
	ready   []*txn
	pending int // changes in ready
	stmts   map[string]string

	mu         sync.Mutex
	held       bool
	cp         *checkpoint
	markers    map[string]chan struct{}
	tracking   bool
	touched    map[string]*keySet
	truncated  map[string]bool
	applied    pglogrepl.LSN // confirmed to the source: everything before it is applied
	lastCommit time.Time     // commit time of the last applied transaction
	behind     bool          // transactions were waiting after the last batch
}

// startApply starts streaming slot from start (its consistent point) and
// applying the changes; stop ends it.
func startApply(ctx context.Context, repl, dst *pgconn.PgConn, slot string, start pglogrepl.LSN, from, to string, log zerolog.Logger) (*applier, error) {
	err := pglogrepl.StartReplication(ctx, repl, slot, start, pglogrepl.StartReplicationOptions{
		Mode:       pglogrepl.LogicalReplication,
		PluginArgs: []string{"proto_version '1'", "publication_names '" + slot + "'", "messages 'true'"},
	})
	if err != nil {
		return nil, &streamError{fmt.Errorf("start: %w", err)}
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	a := &applier{
		repl: repl, dst: dst, from: from, to: to, prefix: slot, log: log, cancel: cancel,
		events: make(chan event, 4096), wake: make(chan struct{}, 1), done: make(chan struct{}),
		rels: map[uint32]*relation{}, stmts: map[string]string{}, markers: map[string]chan struct{}{},
		applied: start,
	}
	a.reader.Add(1)
	go func() {
		defer a.reader.Done()
		a.read(ctx)
	}()
	go func() {
		err := a.run(ctx)
		a.mu.Lock()
		a.err = err
		a.mu.Unlock()
		close(a.done)
	}()
	return a, nil
}

// stop ends the applier and waits for it; the caller closes the connections.
func (a *applier) stop() {
	a.cancel()
	<-a.done
	a.reader.Wait()
}

// failure is why the applier stopped, if it did.
func (a *applier) failure() error {
	select {
	case <-a.done:
		a.mu.Lock()
		defer a.mu.Unlock()
		if a.err == nil || errors.Is(a.err, context.Canceled) {
			return errors.New("move: the change stream stopped")
		}
		return a.err
	default:
		return nil
	}
}

// streamError is a failure of the change stream itself (the source's
// walsender or the replication connection), as opposed to the applier's.
type streamError struct{ err error }

func (e *streamError) Error() string { return "move: change stream: " + e.err.Error() }
func (e *streamError) Unwrap() error { return e.err }

// restartable reports whether err is a failure of the change stream that a
// fresh slot (and a fresh copy under its snapshot) gets past:
//
//   - an internal error of PostgreSQL's logical decoder (XX000), e.g.
//     "could not map filenode … to relation OID" or "pg_attribute catalog
//     is missing 2 attribute(s) for relation OID …". PostgreSQL 15's
//     snapshot builder does not record a transaction that changed the
//     catalog and committed while a slot was being created when the
//     xl_running_xacts record that ends its first phase still lists it as
//     running (the record is written after the commit it missed; reported
//     upstream, not fixed in 15.18). Transactions decoded just after the
//     slot's consistent point then read the catalog without that change:
//     a table that other DDL in the same database (another tenant's schema
//     apply, a provisioning, a TRUNCATE) created, truncated or rewrote at
//     that moment cannot be mapped, and the walsender stops. Nothing of the
//     move causes it and no option avoids it (it happens in the reorder
//     buffer, before the output plugin filters by publication); a new slot,
//     made later, does not meet the same commit;
//   - the walsender or its connection gone (terminated, server restarting,
//     network): a temporary slot goes with it.
func restartable(err error) bool {
	var se *streamError
	if !errors.As(err, &se) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var pgErr *pgconn.PgError
	if !errors.As(se.err, &pgErr) {
		return true // the connection broke
	}
	switch c := pgErr.Code; {
	case c == "XX000": // internal_error: the decoder's
		return true
	case c == "57P01", c == "57P02", c == "57P03", strings.HasPrefix(c, "08"):
		return true // terminated, crash, cannot connect now, connection exceptions
	}
	return false
}

// read receives the stream and hands the decoded messages to run.
func (a *applier) read(ctx context.Context) {
	for {
		msg, err := a.repl.ReceiveMessage(ctx)
		var ev event
		switch {
		case err != nil:
			ev.err = &streamError{err}
		default:
			switch msg := msg.(type) {
			case *pgproto3.CopyData:
				ev = decodeStream(msg.Data)
			case *pgproto3.ErrorResponse:
				ev.err = &streamError{pgconn.ErrorResponseToPgError(msg)}
			default:
				continue
			}
		}
		if ev.msg == nil && !ev.keepalive && ev.err == nil {
			continue
		}
		select {
		case a.events <- ev:
		case <-ctx.Done():
			return
		}
		if ev.err != nil {
			return
		}
	}
}

// decodeStream decodes one CopyData message of the stream. The change's
// bytes are copied: the connection reuses its buffer.
func decodeStream(data []byte) event {
	if len(data) == 0 {
		return event{}
	}
	switch data[0] {
	case pglogrepl.PrimaryKeepaliveMessageByteID:
		k, err := pglogrepl.ParsePrimaryKeepaliveMessage(data[1:])
		if err != nil {
			return event{err: err}
		}
		return event{keepalive: true, walEnd: k.ServerWALEnd, reply: k.ReplyRequested}
	case pglogrepl.XLogDataByteID:
		x, err := pglogrepl.ParseXLogData(data[1:])
		if err != nil {
			return event{err: err}
		}
		m, err := pglogrepl.Parse(bytes.Clone(x.WALData))
		if err != nil {
			return event{err: fmt.Errorf("move: decode change: %w", err)}
		}
		return event{msg: m, walEnd: x.ServerWALEnd}
	}
	return event{}
}

// run applies what read hands it until ctx ends or something fails.
func (a *applier) run(ctx context.Context) error {
	status := time.NewTicker(statusInterval)
	defer status.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-status.C:
			if err := a.sendStatus(ctx); err != nil {
				return err
			}
			continue
		case <-a.wake:
		case ev := <-a.events:
			if err := a.handle(ctx, ev); err != nil {
				return err
			}
		drain:
			for a.pending < maxBatchChanges {
				select {
				case ev := <-a.events:
					if err := a.handle(ctx, ev); err != nil {
						return err
					}
				default:
					break drain
				}
			}
		}
		if err := a.flush(ctx); err != nil {
			return err
		}
	}
}

// handle takes one message of the stream into the transaction being
// received, or the list of complete ones.
func (a *applier) handle(ctx context.Context, ev event) error {
	if ev.err != nil {
		return ev.err
	}
	if ev.keepalive {
		if a.open == nil && len(a.ready) == 0 {
			// Nothing received is unapplied: the source may forget what
			// lies before its end of WAL.
			a.mu.Lock()
			if ev.walEnd > a.applied {
				a.applied = ev.walEnd
			}
			a.mu.Unlock()
		}
		if ev.reply {
			return a.sendStatus(ctx)
		}
		return nil
	}
	switch m := ev.msg.(type) {
	case *pglogrepl.RelationMessage:
		return a.relation(m)
	case *pglogrepl.BeginMessage:
		a.open = &txn{final: m.FinalLSN, commitTime: m.CommitTime}
	case *pglogrepl.CommitMessage:
		if a.open == nil {
			return errors.New("move: change stream: commit without begin")
		}
		a.open.end = m.TransactionEndLSN
		a.ready = append(a.ready, a.open)
		a.pending += len(a.open.changes)
		a.open = nil
	case *pglogrepl.InsertMessage:
		return a.add(m.RelationID, change{op: 'I', new: m.Tuple.Columns})
	case *pglogrepl.UpdateMessage:
		ch := change{op: 'U', new: m.NewTuple.Columns}
		if m.OldTuple != nil {
			ch.old = m.OldTuple.Columns
		}
		return a.add(m.RelationID, ch)
	case *pglogrepl.DeleteMessage:
		if m.OldTuple == nil {
			return errors.New("move: change stream: delete without a key")
		}
		return a.add(m.RelationID, change{op: 'D', old: m.OldTuple.Columns})
	case *pglogrepl.TruncateMessage:
		ch := change{op: 'T', option: m.Option}
		for _, id := range m.RelationIDs {
			rel, ok := a.rels[id]
			if !ok {
				return fmt.Errorf("move: change stream: truncate of unknown relation %d", id)
			}
			ch.truncate = append(ch.truncate, rel)
		}
		if a.open == nil {
			return errors.New("move: change stream: change outside a transaction")
		}
		a.open.changes = append(a.open.changes, ch)
	case *pglogrepl.LogicalDecodingMessage:
		if m.Prefix != a.prefix {
			return nil
		}
		if a.open != nil {
			a.open.markers = append(a.open.markers, string(m.Content))
		} else {
			a.reach(string(m.Content))
		}
	}
	return nil
}

// relation records a table's description; only the source schema's tables
// are published.
func (a *applier) relation(m *pglogrepl.RelationMessage) error {
	if m.Namespace != a.from {
		return fmt.Errorf("move: change stream: table %s.%s is not in %s", m.Namespace, m.RelationName, a.from)
	}
	r := &relation{name: m.RelationName, ident: pgx.Identifier{a.to, m.RelationName}.Sanitize()}
	for i, c := range m.Columns {
		r.names = append(r.names, c.Name)
		r.columns = append(r.columns, pgx.Identifier{c.Name}.Sanitize())
		if c.Flags&1 != 0 {
			r.key = append(r.key, i)
		}
	}
	if len(r.key) == 0 {
		return fmt.Errorf("%w: table %s has no key to apply its changes by", ErrLogicalUnavailable, m.RelationName)
	}
	a.rels[m.RelationID] = r
	return nil
}

func (a *applier) add(relID uint32, ch change) error {
	rel, ok := a.rels[relID]
	if !ok {
		return fmt.Errorf("move: change stream: change of unknown relation %d", relID)
	}
	if a.open == nil {
		return errors.New("move: change stream: change outside a transaction")
	}
	ch.rel = rel
	a.open.changes = append(a.open.changes, ch)
	return nil
}

// flush applies the complete transactions, stopping at a checkpoint to run
// its function between the transactions before it and the others.
func (a *applier) flush(ctx context.Context) error {
	for len(a.ready) > 0 {
		a.mu.Lock()
		held, cp := a.held, a.cp
		a.mu.Unlock()
		if held {
			return nil
		}
		n := len(a.ready)
		if cp != nil {
			for i, t := range a.ready {
				if t.final >= cp.lsn || t.hasMarker(cp.marker) {
					n = i
					break
				}
			}
		}
		if n > 0 {
			if err := a.apply(ctx, a.ready[:n]); err != nil {
				return err
			}
			for _, t := range a.ready[:n] {
				a.pending -= len(t.changes)
			}
			a.ready = a.ready[n:]
		}
		if cp == nil || len(a.ready) == 0 {
			return nil
		}
		// The next transaction committed after the checkpoint.
		err := cp.fn()
		a.mu.Lock()
		a.cp = nil
		cp.touched, cp.truncated = a.touched, a.truncated
		a.tracking = true
		a.touched = map[string]*keySet{}
		a.truncated = map[string]bool{}
		a.mu.Unlock()
		cp.done <- err
		if err != nil {
			return err
		}
	}
	return nil
}

func (t *txn) hasMarker(m string) bool {
	for _, x := range t.markers {
		if x == m {
			return true
		}
	}
	return false
}

// apply runs the changes of txns on the target in one pipeline (one
// implicit transaction), checks that each touched exactly one row, and
// confirms the position to the source.
func (a *applier) apply(ctx context.Context, txns []*txn) error {
	a.mu.Lock()
	tracking := a.tracking
	a.mu.Unlock()
	batch := &pgconn.Batch{}
	var checks []change
	for _, t := range txns {
		for _, ch := range t.changes {
			sql, params, err := ch.statement()
			if err != nil {
				return err
			}
			name, err := a.prepare(ctx, sql)
			if err != nil {
				return err
			}
			batch.ExecPrepared(name, params, nil, nil)
			checks = append(checks, ch)
			if tracking {
				a.track(ch)
			}
		}
	}
	if len(checks) > 0 {
		results, err := a.dst.ExecBatch(ctx, batch).ReadAll()
		if err != nil {
			return fmt.Errorf("move: apply changes to the target: %w", err)
		}
		for i, r := range results {
			if ch := checks[i]; ch.op != 'T' && r.CommandTag.RowsAffected() != 1 {
				return fmt.Errorf("%w: applying a change (%c) to %s touched %d rows on the target", ErrVerify, ch.op,
					ch.rel.name, r.CommandTag.RowsAffected())
			}
		}
	}
	last := txns[len(txns)-1]
	a.mu.Lock()
	if last.end > a.applied {
		a.applied = last.end
	}
	a.lastCommit = last.commitTime
	a.behind = len(a.ready) > len(txns) || len(a.events) > 0
	a.mu.Unlock()
	for _, t := range txns {
		for _, mk := range t.markers {
			a.reach(mk)
		}
	}
	return a.sendStatus(ctx)
}

// statement returns the SQL and text parameters that apply ch.
func (ch change) statement() (string, [][]byte, error) {
	r := ch.rel
	var sb strings.Builder
	var params [][]byte
	param := func(c *pglogrepl.TupleDataColumn) string {
		if c.DataType == pglogrepl.TupleDataTypeNull {
			params = append(params, nil)
		} else {
			params = append(params, c.Data)
		}
		return "$" + strconv.Itoa(len(params))
	}
	where := func(tuple []*pglogrepl.TupleDataColumn) error {
		sb.WriteString(" WHERE ")
		for i, k := range r.key {
			if k >= len(tuple) || tuple[k].DataType == pglogrepl.TupleDataTypeToast {
				return fmt.Errorf("move: change stream: %s: key column %s missing", r.name, r.names[k])
			}
			if i > 0 {
				sb.WriteString(" AND ")
			}
			sb.WriteString(r.columns[k] + " = " + param(tuple[k]))
		}
		return nil
	}
	switch ch.op {
	case 'I':
		var cols, vals []string
		for i, c := range ch.new {
			if c.DataType == pglogrepl.TupleDataTypeToast {
				continue
			}
			cols = append(cols, r.columns[i])
			vals = append(vals, param(c))
		}
		sb.WriteString("INSERT INTO " + r.ident + " (" + strings.Join(cols, ", ") + ") VALUES (" + strings.Join(vals, ", ") + ")")
	case 'U':
		sb.WriteString("UPDATE " + r.ident + " SET ")
		n := 0
		for i, c := range ch.new {
			if c.DataType == pglogrepl.TupleDataTypeToast { // unchanged large value: keep the target's
				continue
			}
			if n > 0 {
				sb.WriteString(", ")
			}
			sb.WriteString(r.columns[i] + " = " + param(c))
			n++
		}
		key := ch.new
		if ch.old != nil {
			key = ch.old
		}
		if err := where(key); err != nil {
			return "", nil, err
		}
	case 'D':
		sb.WriteString("DELETE FROM " + r.ident)
		if err := where(ch.old); err != nil {
			return "", nil, err
		}
	case 'T':
		names := make([]string, len(ch.truncate))
		for i, t := range ch.truncate {
			names[i] = t.ident
		}
		sb.WriteString("TRUNCATE " + strings.Join(names, ", "))
		if ch.option&2 != 0 {
			sb.WriteString(" RESTART IDENTITY")
		}
		if ch.option&1 != 0 {
			sb.WriteString(" CASCADE")
		}
	}
	return sb.String(), params, nil
}

// prepare returns the name of a prepared statement for sql on the target.
func (a *applier) prepare(ctx context.Context, sql string) (string, error) {
	if name, ok := a.stmts[sql]; ok {
		return name, nil
	}
	if len(a.stmts) >= maxStatements {
		for s, name := range a.stmts {
			if err := a.dst.Deallocate(ctx, name); err != nil {
				return "", err
			}
			delete(a.stmts, s)
		}
	}
	name := "pd_apply_" + strconv.Itoa(len(a.stmts)) + "_" + strconv.FormatInt(time.Now().UnixNano(), 36)
	if _, err := a.dst.Prepare(ctx, name, sql, nil); err != nil {
		return "", fmt.Errorf("move: prepare a change for the target: %w", err)
	}
	a.stmts[sql] = name
	return name, nil
}

// track records the keys a change touches (under a.mu's protection of
// touched, written by this goroutine only).
func (a *applier) track(ch change) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if ch.op == 'T' {
		for _, r := range ch.truncate {
			a.truncated[r.name] = true
		}
		return
	}
	ks := a.touched[ch.rel.name]
	if ks == nil {
		ks = &keySet{keys: map[string][]string{}}
		for _, k := range ch.rel.key {
			ks.columns = append(ks.columns, ch.rel.names[k])
		}
		a.touched[ch.rel.name] = ks
	}
	for _, tuple := range [][]*pglogrepl.TupleDataColumn{ch.new, ch.old} {
		if tuple == nil {
			continue
		}
		vals := make([]string, len(ch.rel.key))
		ok := true
		for i, k := range ch.rel.key {
			if k >= len(tuple) || tuple[k].DataType != pglogrepl.TupleDataTypeText {
				ok = false
				break
			}
			vals[i] = string(tuple[k].Data)
		}
		if ok {
			ks.keys[strings.Join(vals, "\x00")] = vals
		}
	}
}

// sendStatus confirms the applied position to the source.
func (a *applier) sendStatus(ctx context.Context) error {
	a.mu.Lock()
	lsn := a.applied
	a.mu.Unlock()
	if err := pglogrepl.SendStandbyStatusUpdate(ctx, a.repl, pglogrepl.StandbyStatusUpdate{
		WALWritePosition: lsn, WALFlushPosition: lsn, WALApplyPosition: lsn,
	}); err != nil {
		return &streamError{fmt.Errorf("confirm position: %w", err)}
	}
	return nil
}

// reach marks a marker as applied.
func (a *applier) reach(marker string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if ch, ok := a.markers[marker]; ok {
		close(ch)
		delete(a.markers, marker)
	}
}

// expect returns a channel closed once marker is applied; call it before
// emitting the marker.
func (a *applier) expect(marker string) <-chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	ch := make(chan struct{})
	a.markers[marker] = ch
	return ch
}

// wait waits for ch, the applier's end or ctx.
func (a *applier) wait(ctx context.Context, ch <-chan struct{}) error {
	select {
	case <-ch:
		return nil
	case <-a.done:
		return a.failure()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// hold stops applying (the stream is still read) until checkpointAt.
func (a *applier) hold() {
	a.mu.Lock()
	a.held = true
	a.mu.Unlock()
}

// checkpointAt applies the transactions that committed before lsn (or
// before the one carrying marker), then runs fn and starts tracking anew
// the keys of what is applied after; cp.done receives fn's error. It ends
// a hold.
func (a *applier) checkpointAt(lsn pglogrepl.LSN, marker string, fn func() error) *checkpoint {
	cp := &checkpoint{lsn: lsn, marker: marker, fn: fn, done: make(chan error, 1)}
	a.mu.Lock()
	a.cp = cp
	a.held = false
	a.mu.Unlock()
	select {
	case a.wake <- struct{}{}:
	default:
	}
	return cp
}

// keysSince counts the keys touched since the last checkpoint.
func (a *applier) keysSince() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, ks := range a.touched {
		n += len(ks.keys)
	}
	return n + len(a.truncated)*maxBatchChanges
}

// touchedSince returns the keys touched and the tables truncated since the
// checkpoint.
func (a *applier) touchedSince() (map[string]*keySet, map[string]bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	touched := make(map[string]*keySet, len(a.touched))
	for name, ks := range a.touched {
		c := &keySet{columns: ks.columns, keys: make(map[string][]string, len(ks.keys))}
		for k, v := range ks.keys {
			c.keys[k] = v
		}
		touched[name] = c
	}
	truncated := make(map[string]bool, len(a.truncated))
	for name := range a.truncated {
		truncated[name] = true
	}
	return touched, truncated
}

// lag is how far behind the source the applied changes are: the age of the
// last applied transaction while more were waiting, zero when caught up.
func (a *applier) lag() time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.behind && len(a.events) == 0 {
		return 0
	}
	if a.lastCommit.IsZero() {
		return 0
	}
	return time.Since(a.lastCommit)
}
