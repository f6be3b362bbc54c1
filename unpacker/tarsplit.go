package unpacker

import (
	"encoding/json"
	"io"
	"path/filepath"
	"strings"
	"unicode/utf8"

	"github.com/vbatts/tar-split/tar/storage"
)

// entryPacker writes tar-split entries in the format of
// storage.NewJSONPacker, but accepts a path named twice. tar-split refuses
// those ("duplicates of file paths not supported", as podman does), yet a
// layer may legally repeat a path and the last entry wins; taproot unpacks
// such layers instead of failing them.
type entryPacker struct {
	enc  *json.Encoder
	pos  int
	seen map[string]int64 // payload size of the last entry of each path
	// shadowed is set when a later entry replaces an earlier one that had
	// content: the earlier bytes are gone from disk, so Reassemble cannot
	// rebuild the tar byte for byte.
	shadowed bool
}

func newEntryPacker(w io.Writer) *entryPacker {
	return &entryPacker{enc: json.NewEncoder(w), seen: map[string]int64{}}
}

func (p *entryPacker) AddEntry(e storage.Entry) (int, error) {
	if e.Name != "" && !utf8.ValidString(e.Name) {
		e.NameRaw = []byte(e.Name)
		e.Name = ""
	}
	if e.Type == storage.FileType {
		name := filepath.Clean(e.GetName())
		if size, ok := p.seen[name]; ok && !p.shadowed {
			// The earlier entry's content, or that of files below it if
			// it was a dir, may be gone from disk now.
			p.shadowed = size > 0 || p.payloadBelow(name)
		}
		p.seen[name] = e.Size
	}
	e.Position = p.pos
	if err := p.enc.Encode(e); err != nil {
		return -1, err
	}
	p.pos++
	return e.Position, nil
}

func (p *entryPacker) payloadBelow(dir string) bool {
	prefix := dir + "/"
	for name, size := range p.seen {
		if size > 0 && strings.HasPrefix(name, prefix) {
			return true
		}
	}
	return false
}

// NewEntryReader reads tar-split entries written by taproot (duplicates
// allowed), for Reassemble and for listing a layer's paths.
func NewEntryReader(r io.Reader) storage.Unpacker {
	return &entryReader{dec: json.NewDecoder(r)}
}

type entryReader struct{ dec *json.Decoder }

func (u *entryReader) Next() (*storage.Entry, error) {
	var e storage.Entry
	if err := u.dec.Decode(&e); err != nil {
		return nil, err // io.EOF at the end, as storage's unpacker
	}
	return &e, nil
}
