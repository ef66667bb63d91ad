package transfer

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
)

// Why binary COPY rather than text: the importer must read the rows as they
// pass — count them, and give the tenant_id column the new tenant's id — and
// binary COPY frames every field with its length, so that takes a small
// state machine and no unescaping; values travel exactly (no DateStyle,
// TimeZone or float rendering in between), a uuid in 16 bytes instead of 36,
// and PostgreSQL neither prints nor parses text on either side. The price:
// the target's column types must be the archive's (the import checks them),
// and a person cannot read the chunks without PostgreSQL (psql's
// \copy … from … (format binary) reads them).

// pgcopySignature opens every binary COPY stream.
var pgcopySignature = []byte("PGCOPY\n\xff\r\n\x00")

// copyFilter checks a binary COPY stream on its way to w — the header,
// every tuple's field count and field lengths, the trailer — counts the
// tuples, and in field rewrite (a uuid column; -1: none) replaces the value
// from by to. Bytes are passed on in place, in large writes.
type copyFilter struct {
	w        io.Writer
	table    string
	ncols    int
	rewrite  int
	from, to [16]byte

	tuples int64
	state  copyState
	field  int
	small  [19]byte // a header being read: signature, tuple or field length
	nsmall int
	need   int // bytes left of a field's value or of the header extension
	uuid   [16]byte
	nuuid  int // bytes of a uuid value that began in an earlier write
}

type copyState int

const (
	stSignature copyState = iota // 19 bytes: signature, flags, extension length
	stExtension                  // the header extension (skipped)
	stTuple                      // 2 bytes: field count, or -1 (trailer)
	stFieldLen                   // 4 bytes: a field's length, or -1 (NULL)
	stValue                      // a field's value
	stUUID                       // the value of the rewritten column
	stDone                       // after the trailer
)

// smallLen is how many bytes the header of each state has.
var smallLen = [...]int{stSignature: 19, stTuple: 2, stFieldLen: 4}

// maxField bounds one value (PostgreSQL's own limit is 1 GB).
const maxField = 1 << 30

func newCopyFilter(w io.Writer, table string, ncols, rewrite int, from, to [16]byte) *copyFilter {
	return &copyFilter{w: w, table: table, ncols: ncols, rewrite: rewrite, from: from, to: to}
}

func (f *copyFilter) bad(format string, args ...any) error {
	return corrupt("table %s: COPY data after %d rows: %s", f.table, f.tuples, fmt.Sprintf(format, args...))
}

// Write checks and passes on p, which it may change (the rewritten values).
func (f *copyFilter) Write(p []byte) (int, error) {
	seg := 0 // start of the bytes not passed on yet
	for i := 0; i < len(p); {
		switch f.state {
		case stValue, stExtension:
			k := min(f.need, len(p)-i)
			i += k
			f.need -= k
			if f.need == 0 {
				if f.state == stExtension {
					f.state = stTuple
				} else {
					f.endField()
				}
			}
		case stUUID:
			switch {
			case f.nuuid == 0 && len(p)-i >= 16:
				if bytes.Equal(p[i:i+16], f.from[:]) {
					copy(p[i:i+16], f.to[:])
				}
				i += 16
				f.endField()
			case f.nuuid == 0: // the value runs past this write: keep its start
				if _, err := f.w.Write(p[seg:i]); err != nil {
					return 0, err
				}
				f.nuuid = copy(f.uuid[:], p[i:])
				i, seg = len(p), len(p)
			default: // the rest of a value kept from the previous write
				k := copy(f.uuid[f.nuuid:], p[i:])
				f.nuuid += k
				i += k
				seg = i
				if f.nuuid < 16 {
					continue
				}
				if f.uuid == f.from {
					f.uuid = f.to
				}
				f.nuuid = 0
				if _, err := f.w.Write(f.uuid[:]); err != nil {
					return 0, err
				}
				f.endField()
			}
		case stDone:
			return 0, f.bad("data after the end marker")
		default:
			f.small[f.nsmall] = p[i]
			f.nsmall++
			i++
			if f.nsmall == smallLen[f.state] {
				f.nsmall = 0
				if err := f.header(); err != nil {
					return 0, err
				}
			}
		}
	}
	if _, err := f.w.Write(p[seg:]); err != nil {
		return 0, err
	}
	return len(p), nil
}

// header interprets a complete signature, tuple or field-length header.
func (f *copyFilter) header() error {
	switch f.state {
	case stSignature:
		if !bytes.Equal(f.small[:11], pgcopySignature) {
			return f.bad("not binary COPY data (no PGCOPY signature)")
		}
		// Bits 0-15 are critical (unknown ones must be refused); 16 is WITH OIDS.
		if flags := binary.BigEndian.Uint32(f.small[11:15]); flags&0x1ffff != 0 {
			return f.bad("header flags %#x are not supported", flags)
		}
		ext := int32(binary.BigEndian.Uint32(f.small[15:19]))
		if ext < 0 {
			return f.bad("negative header extension")
		}
		f.state, f.need = stTuple, int(ext)
		if ext > 0 {
			f.state = stExtension
		}
	case stTuple:
		n := int16(binary.BigEndian.Uint16(f.small[:2]))
		if n == -1 {
			f.state = stDone
			return nil
		}
		if int(n) != f.ncols {
			return f.bad("a row of %d fields (want %d)", n, f.ncols)
		}
		f.field, f.state = 0, stFieldLen
	case stFieldLen:
		n := int32(binary.BigEndian.Uint32(f.small[:4]))
		switch {
		case n == -1:
			f.endField()
		case n < -1 || n > maxField:
			return f.bad("field %d has length %d", f.field+1, n)
		case f.field == f.rewrite:
			if n != 16 {
				return f.bad("tenant_id is %d bytes, not a uuid", n)
			}
			f.state = stUUID
		case n == 0:
			f.endField()
		default:
			f.state, f.need = stValue, int(n)
		}
	}
	return nil
}

func (f *copyFilter) endField() {
	f.field++
	f.state = stFieldLen
	if f.field == f.ncols {
		f.tuples++
		f.state = stTuple
	}
}

// finish reports an error unless the stream ended with its end marker.
func (f *copyFilter) finish() error {
	if f.state != stDone {
		return f.bad("the data ends without its end marker (truncated)")
	}
	return nil
}
