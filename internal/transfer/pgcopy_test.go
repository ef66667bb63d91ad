package transfer

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// copyStream builds binary COPY data of rows of (int4 id, uuid tenant_id,
// text name); a nil field is NULL.
func copyStream(rows [][3][]byte) []byte {
	var b bytes.Buffer
	b.Write(pgcopySignature)
	b.Write([]byte{0, 0, 0, 0, 0, 0, 0, 0}) // flags, extension length
	for _, r := range rows {
		binary.Write(&b, binary.BigEndian, int16(3))
		for _, f := range r {
			if f == nil {
				binary.Write(&b, binary.BigEndian, int32(-1))
				continue
			}
			binary.Write(&b, binary.BigEndian, int32(len(f)))
			b.Write(f)
		}
	}
	binary.Write(&b, binary.BigEndian, int16(-1))
	return b.Bytes()
}

func int4(v int32) []byte { return binary.BigEndian.AppendUint32(nil, uint32(v)) }

var (
	oldID   = [16]byte{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}
	newID   = [16]byte{2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2}
	otherID = [16]byte{3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3}
)

// TestCopyFilterRewritesAcrossAnySplit feeds the same stream cut at every
// byte (two writes), then one byte per write: the output is always the
// input with the tenant's old id replaced, other values untouched.
func TestCopyFilterRewritesAcrossAnySplit(t *testing.T) {
	in := copyStream([][3][]byte{
		{int4(1), oldID[:], []byte("ann")},
		{int4(2), otherID[:], nil},
		{nil, nil, []byte("")},
		{int4(4), oldID[:], []byte("tab\there")},
	})
	want := copyStream([][3][]byte{
		{int4(1), newID[:], []byte("ann")},
		{int4(2), otherID[:], nil},
		{nil, nil, []byte("")},
		{int4(4), newID[:], []byte("tab\there")},
	})
	run := func(parts [][]byte) ([]byte, *copyFilter) {
		var out bytes.Buffer
		f := newCopyFilter(&out, "t", 3, 1, oldID, newID)
		for _, p := range parts {
			_, err := f.Write(bytes.Clone(p))
			require.NoError(t, err)
		}
		require.NoError(t, f.finish())
		return out.Bytes(), f
	}
	for cut := 0; cut <= len(in); cut++ {
		out, f := run([][]byte{in[:cut], in[cut:]})
		require.Equal(t, want, out, "cut at %d", cut)
		require.Equal(t, int64(4), f.tuples)
	}
	var bytewise [][]byte
	for i := range in {
		bytewise = append(bytewise, in[i:i+1])
	}
	out, _ := run(bytewise)
	assert.Equal(t, want, out)
}

func TestCopyFilterRefusesBadStreams(t *testing.T) {
	good := copyStream([][3][]byte{{int4(1), oldID[:], []byte("x")}})
	cases := map[string][]byte{
		"truncated":        good[:len(good)-1],
		"no signature":     append([]byte("PGCOPY\n\xff\r\n\x01"), good[11:]...),
		"oids":             append(append(bytes.Clone(good[:11]), 0, 1, 0, 0), good[15:]...),
		"after the end":    append(bytes.Clone(good), 0),
		"short tenant_id":  copyStream([][3][]byte{{int4(1), oldID[:15], nil}}),
		"two fields":       append(append(bytes.Clone(good[:19]), 0, 2), good[21:]...),
		"negative length":  append(append(bytes.Clone(good[:21]), 0xff, 0xff, 0xff, 0xf0), good[25:]...),
		"empty":            nil,
		"only the header":  good[:19],
		"only the trailer": {0xff, 0xff},
	}
	for name, in := range cases {
		t.Run(name, func(t *testing.T) {
			f := newCopyFilter(&bytes.Buffer{}, "t", 3, 1, oldID, newID)
			_, err := f.Write(bytes.Clone(in))
			if err == nil {
				err = f.finish()
			}
			require.Error(t, err)
			assert.ErrorIs(t, err, ErrInvalidArchive)
		})
	}
}
