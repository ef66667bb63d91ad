package transfer

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"regexp"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/klauspost/compress/flate"
	"github.com/klauspost/compress/gzip"

	"github.com/publicdigit/publicdigit/internal/modules"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

// The archive is a gzip-compressed tar file that standard tools open
// (tar xzf): manifest.json first; then every table's rows as PostgreSQL
// binary COPY data, split into numbered chunks (data/<table>/000001.pgcopy,
// …; concatenated, a table's chunks are exactly what COPY … TO STDOUT
// (FORMAT binary) wrote), each carrying its SHA-256 in a PAX record; then
// end.json, which seals the archive (the manifest's digest, each table's
// byte count and digest). A chunk is held in memory while it is written or
// checked, so export and import use a bounded amount of memory whatever the
// tenant's size.
const (
	// Format names the archive format in the manifest.
	Format = "publicdigit-tenant-archive"
	// FormatVersion is the version this code writes and reads.
	FormatVersion = 1

	manifestName = "manifest.json"
	endName      = "end.json"
	dataPrefix   = "data/"
	chunkSuffix  = ".pgcopy"
	// paxDigest carries a chunk's SHA-256 (hex) in its tar header.
	paxDigest = "PUBLICDIGIT.sha256"

	// ChunkSize is how much COPY data goes in one chunk.
	ChunkSize = 4 << 20
	// maxChunk bounds a chunk an import accepts (and so the memory it takes).
	maxChunk = 64 << 20
	// maxMeta bounds manifest.json and end.json.
	maxMeta = 4 << 20
)

// Manifest describes an archive: where it comes from, the schema its rows
// fit, and each table's columns, row count and checksum.
type Manifest struct {
	Format  string `json:"format"`
	Version int    `json:"version"`
	// CreatedAt is when the export's snapshot was taken.
	CreatedAt time.Time      `json:"created_at"`
	Tenant    ManifestTenant `json:"tenant"`
	// SchemaHash is the exporting platform's hash of the tenant's desired
	// schema (core + modules), as its catalog recorded it.
	SchemaHash string           `json:"schema_hash"`
	Modules    []ManifestModule `json:"modules"`
	// CopyFormat is the COPY format of the data chunks: "binary".
	CopyFormat string `json:"copy_format"`
	// ServerVersion is the exporting PostgreSQL's server_version_num.
	ServerVersion int             `json:"server_version"`
	Tables        []ManifestTable `json:"tables"`
	Sequences     []Sequence      `json:"sequences"`
}

// ManifestTenant is the exported tenant as its catalog had it.
type ManifestTenant struct {
	ID     uuid.UUID     `json:"id"`
	Slug   string        `json:"slug"`
	Name   string        `json:"name"`
	Status tenant.Status `json:"status"`
}

// ManifestModule is a module of the tenant: installed (its tables are in
// the archive), or removed (a default module the tenant uninstalled, which
// an import keeps uninstalled).
type ManifestModule struct {
	Name        string   `json:"name"`
	Status      string   `json:"status"`
	Version     string   `json:"version"`
	SchemaFiles []string `json:"schema_files"`
}

// ManifestTable is one table: its columns in COPY order (by name), how many
// rows it had and their checksum (see checksumSQL), by ChecksumMethod
// (hash_record_extended, or hashtextextended for a table with a column type
// that has no hash function).
type ManifestTable struct {
	Name           string   `json:"name"`
	Columns        []Column `json:"columns"`
	Rows           int64    `json:"rows"`
	ChecksumMethod string   `json:"checksum_method"`
	Checksum       string   `json:"checksum"`
}

// Column is a column's name and type (format_type).
type Column struct {
	Name string `json:"name"`
	Type string `json:"type"`
}

// Sequence is a sequence of the tenant's schema and its position.
type Sequence struct {
	Name      string `json:"name"`
	LastValue int64  `json:"last_value"`
}

// End seals an archive: what was written, to check against what was read.
type End struct {
	// ManifestSHA256 is the digest of manifest.json as written.
	ManifestSHA256 string     `json:"manifest_sha256"`
	Tables         []TableEnd `json:"tables"`
}

// TableEnd is what an archive holds of one table.
type TableEnd struct {
	Name   string `json:"name"`
	Chunks int    `json:"chunks"`
	Bytes  int64  `json:"bytes"`
	SHA256 string `json:"sha256"`
}

// identPattern accepts the table, column and sequence names an archive may
// name: lower-case identifiers, as the tenant schemas use.
var identPattern = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// typePattern accepts format_type names (e.g. "timestamp with time zone",
// "character varying(20)", "text[]"); they are compared, never quoted into SQL.
var typePattern = regexp.MustCompile(`^[a-z_][a-z0-9_ ,()\[\]"]{0,99}$`)

// validate checks everything an import relies on before it touches a database.
func (m *Manifest) validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: manifest: %s", ErrInvalidArchive, fmt.Sprintf(format, args...))
	}
	switch {
	case m.Format != Format:
		return bad("format %q is not %s", clip(m.Format, 60), Format)
	case m.Version > FormatVersion:
		return fmt.Errorf("%w: archive format version %d is newer than this release reads (%d): import it with a newer release",
			ErrSchemaUnreachable, m.Version, FormatVersion)
	case m.Version < 1:
		return bad("version %d", m.Version)
	case m.CopyFormat != "binary":
		return bad("copy format %q (want binary)", clip(m.CopyFormat, 20))
	case len(m.Tables) == 0:
		return bad("no tables")
	}
	if _, err := tenant.ParseSlug(m.Tenant.Slug); err != nil {
		return bad("tenant slug: %v", err)
	}
	if err := tenant.ValidateName(m.Tenant.Name); err != nil {
		return bad("tenant name: %v", err)
	}
	seen := map[string]bool{}
	for _, mod := range m.Modules {
		if !identPattern.MatchString(mod.Name) || seen["module "+mod.Name] ||
			(mod.Status != modules.StatusInstalled && mod.Status != modules.StatusRemoved) {
			return bad("module %q (%q)", clip(mod.Name, 70), clip(mod.Status, 20))
		}
		seen["module "+mod.Name] = true
	}
	for _, t := range m.Tables {
		if !identPattern.MatchString(t.Name) || seen["table "+t.Name] {
			return bad("table name %q", clip(t.Name, 70))
		}
		seen["table "+t.Name] = true
		if len(t.Columns) == 0 || len(t.Columns) > 1600 {
			return bad("table %s has %d columns", t.Name, len(t.Columns))
		}
		cols := map[string]bool{}
		for i, c := range t.Columns {
			if !identPattern.MatchString(c.Name) || cols[c.Name] || !typePattern.MatchString(c.Type) {
				return bad("table %s: column %q of type %q", t.Name, clip(c.Name, 70), clip(c.Type, 100))
			}
			if i > 0 && c.Name < t.Columns[i-1].Name {
				return bad("table %s: columns are not in name order", t.Name)
			}
			cols[c.Name] = true
		}
		if t.Rows < 0 || !checksumPattern.MatchString(t.Checksum) ||
			(t.ChecksumMethod != checksumRecord && t.ChecksumMethod != checksumText) {
			return bad("table %s: rows %d, checksum %q by %q", t.Name, t.Rows, clip(t.Checksum, 50), clip(t.ChecksumMethod, 30))
		}
	}
	for _, s := range m.Sequences {
		if !identPattern.MatchString(s.Name) {
			return bad("sequence %q", clip(s.Name, 70))
		}
	}
	return nil
}

// checksumPattern: a checksum is the decimal sum of 64-bit row hashes.
var checksumPattern = regexp.MustCompile(`^-?[0-9]{1,30}$`)

// Rows is the total row count of the manifest's tables.
func (m *Manifest) Rows() int64 {
	var n int64
	for _, t := range m.Tables {
		n += t.Rows
	}
	return n
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// archiveWriter writes an archive to w, one table after another.
type archiveWriter struct {
	gz       *gzip.Writer
	tw       *tar.Writer
	modTime  time.Time
	manifest []byte

	// The table being written: its chunk buffer and running digest.
	table  string
	buf    bytes.Buffer
	chunks int
	bytes  int64
	digest digest
	ends   []TableEnd
}

// digest is a running SHA-256.
type digest struct{ h hash.Hash }

func newDigest() digest { return digest{h: sha256.New()} }

func (d digest) Write(p []byte) { d.h.Write(p) }

func (d digest) hex() string { return hex.EncodeToString(d.h.Sum(nil)) }

func newArchiveWriter(w io.Writer, m *Manifest) (*archiveWriter, error) {
	gz, err := gzip.NewWriterLevel(w, gzip.BestSpeed)
	if err != nil {
		return nil, err
	}
	a := &archiveWriter{gz: gz, tw: tar.NewWriter(gz), modTime: m.CreatedAt.UTC().Truncate(time.Second)}
	if a.manifest, err = json.MarshalIndent(m, "", "  "); err != nil {
		return nil, err
	}
	if err := a.file(manifestName, a.manifest, nil); err != nil {
		return nil, err
	}
	return a, nil
}

// file writes one tar entry.
func (a *archiveWriter) file(name string, body []byte, pax map[string]string) error {
	hdr := &tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), ModTime: a.modTime, Typeflag: tar.TypeReg,
		Format: tar.FormatPAX, PAXRecords: pax}
	if err := a.tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("archive: %s: %w", name, err)
	}
	if _, err := a.tw.Write(body); err != nil {
		return fmt.Errorf("archive: %s: %w", name, err)
	}
	return nil
}

// beginTable starts the data of a table; Write then takes its COPY data.
func (a *archiveWriter) beginTable(name string) {
	a.table, a.chunks, a.bytes = name, 0, 0
	a.buf.Reset()
	a.digest = newDigest()
}

// Write takes COPY data of the current table, writing a chunk whenever ChunkSize is reached.
func (a *archiveWriter) Write(p []byte) (int, error) {
	a.buf.Write(p)
	if a.buf.Len() >= ChunkSize {
		if err := a.flushChunk(); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

func (a *archiveWriter) flushChunk() error {
	body := a.buf.Bytes()
	sum := sha256.Sum256(body)
	a.chunks++
	name := fmt.Sprintf("%s%s/%06d%s", dataPrefix, a.table, a.chunks, chunkSuffix)
	if err := a.file(name, body, map[string]string{paxDigest: hex.EncodeToString(sum[:])}); err != nil {
		return err
	}
	a.digest.Write(body)
	a.bytes += int64(len(body))
	a.buf.Reset()
	return nil
}

// endTable writes the table's last chunk.
func (a *archiveWriter) endTable() error {
	if a.buf.Len() > 0 || a.chunks == 0 {
		if err := a.flushChunk(); err != nil {
			return err
		}
	}
	a.ends = append(a.ends, TableEnd{Name: a.table, Chunks: a.chunks, Bytes: a.bytes, SHA256: a.digest.hex()})
	return nil
}

// close seals the archive with end.json and flushes everything.
func (a *archiveWriter) close() error {
	ms := sha256.Sum256(a.manifest)
	end, err := json.MarshalIndent(End{ManifestSHA256: hex.EncodeToString(ms[:]), Tables: a.ends}, "", "  ")
	if err != nil {
		return err
	}
	if err := a.file(endName, end, nil); err != nil {
		return err
	}
	if err := a.tw.Close(); err != nil {
		return fmt.Errorf("archive: %w", err)
	}
	if err := a.gz.Close(); err != nil {
		return fmt.Errorf("archive: %w", err)
	}
	return nil
}

// archiveReader reads an archive in one pass, checking every chunk's
// digest before handing out its bytes.
type archiveReader struct {
	gz       *gzip.Reader
	tr       *tar.Reader
	manifest *Manifest
	rawMan   []byte
	next     *tar.Header // read ahead, not consumed
	chunk    []byte
}

// corrupt is the error of an archive that does not read back as written.
func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidArchive, fmt.Sprintf(format, args...))
}

// readErr describes an error of the compressed stream or the tar framing:
// a file cut short, or bytes changed.
func readErr(where string, err error) error {
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return corrupt("%s: the archive ends too early (truncated)", where)
	case errors.Is(err, gzip.ErrChecksum), errors.Is(err, gzip.ErrHeader), errors.Is(err, tar.ErrHeader):
		return corrupt("%s: the archive is corrupted (%v)", where, err)
	}
	var ce flate.CorruptInputError
	if errors.As(err, &ce) {
		return corrupt("%s: the archive is corrupted (%v)", where, err)
	}
	return fmt.Errorf("%s: %w", where, err)
}

// openArchive reads the gzip and tar framing and the manifest, and validates it.
func openArchive(r io.Reader) (*archiveReader, error) {
	gz, err := gzip.NewReader(r)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, corrupt("the archive is empty")
		}
		if errors.Is(err, gzip.ErrHeader) {
			return nil, corrupt("not a tenant archive (not gzip-compressed)")
		}
		return nil, readErr("archive", err)
	}
	gz.Multistream(false)
	a := &archiveReader{gz: gz, tr: tar.NewReader(gz)}
	hdr, err := a.tr.Next()
	if err != nil {
		return nil, readErr("manifest", err)
	}
	if hdr.Name != manifestName {
		return nil, corrupt("not a tenant archive (first entry %q, want %s)", clip(hdr.Name, 80), manifestName)
	}
	raw, err := a.body(hdr, maxMeta)
	if err != nil {
		return nil, err
	}
	a.rawMan = bytes.Clone(raw) // body's buffer is reused for the chunks
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(a.rawMan))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, corrupt("%s is not the manifest of a tenant archive, or is corrupted: %v", manifestName, err)
	}
	if err := m.validate(); err != nil {
		return nil, a.trusted(err)
	}
	a.manifest = &m
	return a, nil
}

// trusted returns err, a refusal of what the archive says (a schema or a
// module this release cannot have), unless the archive turns out to be
// corrupted: a flipped byte can still decompress, into a manifest that names
// another schema, and gzip's checksum sits at the end of the stream. So the
// rest is read first (only on this path) and a corruption reported instead.
func (a *archiveReader) trusted(err error) error {
	if err == nil || errors.Is(err, ErrInvalidArchive) {
		return err
	}
	if _, rerr := io.Copy(io.Discard, a.gz); rerr != nil {
		if cerr := readErr("archive", rerr); errors.Is(cerr, ErrInvalidArchive) {
			return cerr
		}
	}
	return err
}

// body reads a whole entry of at most limit bytes.
func (a *archiveReader) body(hdr *tar.Header, limit int64) ([]byte, error) {
	if hdr.Typeflag != tar.TypeReg || hdr.Size < 0 || hdr.Size > limit {
		return nil, corrupt("entry %s: %d bytes (at most %d)", clip(hdr.Name, 80), hdr.Size, limit)
	}
	if int64(cap(a.chunk)) < hdr.Size {
		a.chunk = make([]byte, hdr.Size)
	}
	b := a.chunk[:hdr.Size]
	if _, err := io.ReadFull(a.tr, b); err != nil {
		return nil, readErr(hdr.Name, err)
	}
	return b, nil
}

// peek returns the next entry's header without consuming it.
func (a *archiveReader) peek() (*tar.Header, error) {
	if a.next == nil {
		hdr, err := a.tr.Next()
		if errors.Is(err, io.EOF) {
			return nil, corrupt("the archive ends before %s (truncated)", endName)
		}
		if err != nil {
			return nil, readErr("archive", err)
		}
		a.next = hdr
	}
	return a.next, nil
}

// nextChunk returns the next data chunk of table (its digest checked), or
// nil at the end of the table's chunks. The slice is valid until the next call.
func (a *archiveReader) nextChunk(table string, n int) ([]byte, error) {
	hdr, err := a.peek()
	if err != nil {
		return nil, err
	}
	want := fmt.Sprintf("%s%s/%06d%s", dataPrefix, table, n, chunkSuffix)
	if hdr.Name != want {
		if strings.HasPrefix(hdr.Name, dataPrefix+table+"/") {
			return nil, corrupt("table %s: entry %s out of order (want %s)", table, clip(hdr.Name, 80), want)
		}
		return nil, nil
	}
	a.next = nil
	b, err := a.body(hdr, maxChunk)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(b)
	if got, want := hex.EncodeToString(sum[:]), hdr.PAXRecords[paxDigest]; got != want {
		return nil, corrupt("%s is corrupted: its SHA-256 is %s, the archive says %q", hdr.Name, got, clip(want, 70))
	}
	return b, nil
}

// end reads end.json, checks it against the manifest and what was read,
// and reads the compressed stream to its end (its CRC is checked there).
func (a *archiveReader) end(read []TableEnd) error {
	hdr, err := a.peek()
	if err != nil {
		return err
	}
	if hdr.Name != endName {
		return corrupt("unexpected entry %s (want %s)", clip(hdr.Name, 80), endName)
	}
	a.next = nil
	b, err := a.body(hdr, maxMeta)
	if err != nil {
		return err
	}
	var e End
	if err := json.Unmarshal(b, &e); err != nil {
		return corrupt("%s is corrupted: %v", endName, err)
	}
	ms := sha256.Sum256(a.rawMan)
	if hex.EncodeToString(ms[:]) != e.ManifestSHA256 {
		return corrupt("%s is corrupted: its digest does not match %s", manifestName, endName)
	}
	if len(e.Tables) != len(read) {
		return corrupt("%s lists %d tables, the archive holds %d", endName, len(e.Tables), len(read))
	}
	for i := range read {
		if e.Tables[i] != read[i] {
			return corrupt("table %s: %d chunks, %d bytes, SHA-256 %s read; %s says %d chunks, %d bytes, %s",
				read[i].Name, read[i].Chunks, read[i].Bytes, read[i].SHA256, endName,
				e.Tables[i].Chunks, e.Tables[i].Bytes, clip(e.Tables[i].SHA256, 70))
		}
	}
	if _, err := a.tr.Next(); !errors.Is(err, io.EOF) {
		if err != nil {
			return readErr("archive end", err)
		}
		return corrupt("entries after %s", endName)
	}
	// The rest of the gzip member (tar padding) and its CRC-32 trailer.
	if _, err := io.Copy(io.Discard, a.gz); err != nil {
		return readErr("archive end", err)
	}
	return nil
}
