package transfer_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/publicdigit/publicdigit/internal/catalog/catalogtest"
	"github.com/publicdigit/publicdigit/internal/tenant"
	"github.com/publicdigit/publicdigit/internal/transfer"
)

// entry is one file of an archive.
type entry struct {
	hdr  *tar.Header
	body []byte
}

// unpack reads an archive's entries (with the standard library's readers:
// the archive is plain tar.gz).
func unpack(t *testing.T, archive []byte) []entry {
	t.Helper()
	gz, err := gzip.NewReader(bytes.NewReader(archive))
	require.NoError(t, err)
	tr := tar.NewReader(gz)
	var out []entry
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return out
		}
		require.NoError(t, err)
		b, err := io.ReadAll(tr)
		require.NoError(t, err)
		out = append(out, entry{hdr: hdr, body: b})
	}
}

// pack writes entries back into an archive; reseal recomputes every digest
// (chunks and end.json), as a well-meaning but wrong exporter would.
func pack(t *testing.T, entries []entry, reseal bool) []byte {
	t.Helper()
	if reseal {
		var end transfer.End
		digests := map[string]hashState{}
		var order []string
		for _, e := range entries {
			switch {
			case e.hdr.Name == "manifest.json":
				s := sha256.Sum256(e.body)
				end.ManifestSHA256 = hex.EncodeToString(s[:])
			case strings.HasPrefix(e.hdr.Name, "data/"):
				table := strings.Split(e.hdr.Name, "/")[1]
				s := sha256.Sum256(e.body)
				e.hdr.PAXRecords["PUBLICDIGIT.sha256"] = hex.EncodeToString(s[:])
				d, ok := digests[table]
				if !ok {
					order = append(order, table)
					d = hashState{h: sha256.New()}
				}
				d.h.Write(e.body)
				d.chunks++
				d.bytes += int64(len(e.body))
				digests[table] = d
			}
		}
		for _, table := range order {
			d := digests[table]
			end.Tables = append(end.Tables, transfer.TableEnd{Name: table, Chunks: d.chunks, Bytes: d.bytes,
				SHA256: hex.EncodeToString(d.h.Sum(nil))})
		}
		b, err := json.Marshal(end)
		require.NoError(t, err)
		entries[len(entries)-1].body = b
	}
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, e := range entries {
		e.hdr.Size = int64(len(e.body))
		require.NoError(t, tw.WriteHeader(e.hdr))
		_, err := tw.Write(e.body)
		require.NoError(t, err)
	}
	require.NoError(t, tw.Close())
	require.NoError(t, gz.Close())
	return buf.Bytes()
}

type hashState struct {
	h      hash.Hash
	chunks int
	bytes  int64
}

// withManifest returns the archive with its manifest changed by edit, resealed.
func withManifest(t *testing.T, archive []byte, edit func(m *transfer.Manifest)) []byte {
	t.Helper()
	entries := unpack(t, archive)
	require.Equal(t, "manifest.json", entries[0].hdr.Name)
	var m transfer.Manifest
	require.NoError(t, json.Unmarshal(entries[0].body, &m))
	edit(&m)
	b, err := json.Marshal(m)
	require.NoError(t, err)
	entries[0].body = b
	return pack(t, entries, true)
}

func TestArchiveIsPlainTarGz(t *testing.T) {
	t.Parallel()
	b := newBundle(t, nil)
	src := b.source(t, 10)
	entries := unpack(t, b.export(t, src.slug))
	names := make([]string, len(entries))
	for i, e := range entries {
		names[i] = e.hdr.Name
	}
	assert.Equal(t, []string{"manifest.json", "data/card_activities/000001.pgcopy", "data/digital_cards/000001.pgcopy",
		"data/event_registrations/000001.pgcopy", "data/events/000001.pgcopy", "data/members/000001.pgcopy", "end.json"}, names)
	var m transfer.Manifest
	require.NoError(t, json.Unmarshal(entries[0].body, &m))
	assert.Equal(t, src.ID, m.Tenant.ID)
	assert.Equal(t, "binary", m.CopyFormat)
	require.Len(t, m.Modules, 2)
	assert.Equal(t, transfer.ManifestModule{Name: "digital_cards", Status: "installed", Version: "1.0.0",
		SchemaFiles: []string{"modules/digital_cards.hcl"}}, m.Modules[0], "the default module")
	assert.Equal(t, src.module, m.Modules[1].Name)
	assert.Equal(t, "installed", m.Modules[1].Status)
	assert.Equal(t, int64(10), m.Tables[4].Rows)
	assert.True(t, bytes.HasPrefix(entries[5].body, []byte("PGCOPY\n\xff\r\n\x00")), "a chunk is PostgreSQL binary COPY data")
	assert.NotEmpty(t, catalogtest.Recorded(t, b.admin, src.ID).Hash)
	assert.Equal(t, catalogtest.Recorded(t, b.admin, src.ID).Hash, m.SchemaHash)
}

// TestImportRefusesCorruptedArchive flips bytes of the compressed file and
// of a chunk (with its digest left as written): each import is refused as
// an invalid archive and leaves nothing behind.
func TestImportRefusesCorruptedArchive(t *testing.T) {
	t.Parallel()
	b := newBundle(t, nil)
	src := b.source(t, 200)
	archive := b.export(t, src.slug)

	cases := map[string][]byte{}
	for _, at := range []float64{0.01, 0.3, 0.6, 0.9, 0.999} {
		bad := bytes.Clone(archive)
		bad[int(float64(len(bad))*at)] ^= 0x5a
		cases[fmt.Sprintf("gzip byte at %g", at)] = bad
	}
	entries := unpack(t, archive)
	entries[5].body[len(entries[5].body)/2] ^= 0x01 // members: a changed byte, digest as written
	cases["chunk byte"] = pack(t, entries, false)
	// A flipped byte that still decompresses can turn the manifest into one
	// of another schema; only gzip's checksum, at the end, tells.
	other := withManifest(t, archive, func(m *transfer.Manifest) { m.Tables[4].Columns[0].Type = "text" })
	other[len(other)-8] ^= 0xff // the CRC-32 of the gzip trailer
	cases["gzip checksum, manifest of another schema"] = other
	cases["not an archive"] = []byte("name,email\nann,ann@example.test\n")
	cases["empty"] = nil

	for name, bad := range cases {
		t.Run(name, func(t *testing.T) {
			as := newSlug(t, "exc")
			_, err := b.importAs(t, bad, as)
			require.Error(t, err)
			assert.ErrorIs(t, err, transfer.ErrInvalidArchive, "%v", err)
			t.Log(err)
			b.assertNothing(t, as)
		})
	}
}

// TestImportRefusesTruncatedArchive cuts the archive at several points:
// after the manifest, in the middle of the data, inside the seal and the
// gzip trailer.
func TestImportRefusesTruncatedArchive(t *testing.T) {
	t.Parallel()
	b := newBundle(t, nil)
	src := b.source(t, 200)
	archive := b.export(t, src.slug)
	for _, cut := range []int{10, len(archive) / 4, len(archive) / 2, len(archive) - 300, len(archive) - 20, len(archive) - 4, len(archive) - 1} {
		t.Run(fmt.Sprintf("at %d of %d", cut, len(archive)), func(t *testing.T) {
			as := newSlug(t, "ext")
			_, err := b.importAs(t, archive[:cut], as)
			require.Error(t, err)
			assert.ErrorIs(t, err, transfer.ErrInvalidArchive, "%v", err)
			t.Log(err)
			b.assertNothing(t, as)
		})
	}
	// Whole entries dropped, the archive otherwise well-formed.
	entries := unpack(t, archive)
	for name, keep := range map[string][]entry{
		"without end.json":       entries[:len(entries)-1],
		"without a table's data": append(append([]entry{}, entries[:3]...), entries[4:]...),
	} {
		t.Run(name, func(t *testing.T) {
			as := newSlug(t, "ext")
			_, err := b.importAs(t, pack(t, keep, false), as)
			assert.ErrorIs(t, err, transfer.ErrInvalidArchive, "%v", err)
			t.Log(err)
			b.assertNothing(t, as)
		})
	}
}

// TestImportVerifiesRows: an archive whose chunks and seal are consistent
// but whose manifest disagrees with its rows (a checksum, a count) is
// refused by the verification in the database, after loading.
func TestImportVerifiesRows(t *testing.T) {
	t.Parallel()
	b := newBundle(t, nil)
	src := b.source(t, 50)
	archive := b.export(t, src.slug)
	for name, edit := range map[string]func(m *transfer.Manifest){
		"checksum": func(m *transfer.Manifest) { m.Tables[1].Checksum = "12345" },
		"count":    func(m *transfer.Manifest) { m.Tables[4].Rows++ },
	} {
		t.Run(name, func(t *testing.T) {
			as := newSlug(t, "exv")
			_, err := b.importAs(t, withManifest(t, archive, edit), as)
			assert.ErrorIs(t, err, transfer.ErrInvalidArchive, "%v", err)
			t.Log(err)
			b.assertNothing(t, as)
		})
	}
}

// TestImportRefusesUnreachableSchema: a module not registered here, a table
// or column this release lacks (an archive of a newer release), a column
// of another type, a newer archive format.
func TestImportRefusesUnreachableSchema(t *testing.T) {
	t.Parallel()
	b := newBundle(t, nil)
	src := b.source(t, 20)
	archive := b.export(t, src.slug)
	for name, edit := range map[string]func(m *transfer.Manifest){
		"unknown module": func(m *transfer.Manifest) {
			m.Modules = append(m.Modules, transfer.ManifestModule{Name: "payroll", Status: "installed", Version: "9.1"})
		},
		"unknown column": func(m *transfer.Manifest) {
			cols := m.Tables[4].Columns
			m.Tables[4].Columns = append(cols[:2:2], append([]transfer.Column{{Name: "extra", Type: "text"}}, cols[2:]...)...)
		},
		"unknown table": func(m *transfer.Manifest) {
			m.Tables = append(m.Tables, transfer.ManifestTable{Name: "zz_new", Columns: []transfer.Column{{Name: "id", Type: "uuid"}},
				ChecksumMethod: "hash_record_extended", Checksum: "0"})
		},
		"other type":   func(m *transfer.Manifest) { m.Tables[4].Columns[0].Type = "text" },
		"newer format": func(m *transfer.Manifest) { m.Version = transfer.FormatVersion + 1 },
	} {
		t.Run(name, func(t *testing.T) {
			as := newSlug(t, "exu")
			_, err := b.importAs(t, withManifest(t, archive, edit), as)
			assert.ErrorIs(t, err, transfer.ErrSchemaUnreachable, "%v", err)
			t.Log(err)
			b.assertNothing(t, as)
		})
	}
}

// TestImportRefusesTakenSlug: the archive's own slug (the source still
// exists), then another tenant's; neither is touched.
func TestImportRefusesTakenSlug(t *testing.T) {
	t.Parallel()
	b := newBundle(t, nil)
	src := b.source(t, 20)
	other := b.source(t, 0)
	archive := b.export(t, src.slug)
	ctx := context.Background()
	for _, as := range []tenant.Slug{{}, other.slug} {
		before, err := b.a.Catalog.Get(ctx, src.slug)
		require.NoError(t, err)
		_, err = b.importAs(t, archive, as)
		assert.ErrorIs(t, err, tenant.ErrExists)
		after, err := b.a.Catalog.Get(ctx, src.slug)
		require.NoError(t, err)
		assert.Equal(t, before, after)
		n, _ := b.content(t, other.Schema, "members", other.ID)
		assert.Zero(t, n, "the other tenant got no rows")
	}
	b.assertNothing(t, tenant.MustSlug("never_made"))
}
