package rawtar

import (
	"archive/tar"
	"bytes"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"
)

// archive/tar reads what the package writes: the checksum is right, and
// the sparse entry is the file it describes.
func TestReadByArchiveTar(t *testing.T) {
	mtime := time.Date(2021, 2, 3, 4, 5, 6, 0, time.UTC)
	payload := []byte("abcde")
	var b []byte
	b = append(b, SparsePAX01Head("s", 1<<20, [][2]int64{{4096, 3}, {8192, 2}}, int64(len(payload)), mtime)...)
	b = append(b, Pad(payload)...)
	b = append(b, Header("f", '0', 0, mtime)...)
	b = append(b, make([]byte, 2*BlockSize)...)
	tr := tar.NewReader(bytes.NewReader(b))
	h, err := tr.Next()
	if err != nil {
		t.Fatal(err)
	}
	if h.Name != "s" || h.Size != 1<<20 || !h.ModTime.Equal(mtime) || h.Mode != 0o644 {
		t.Errorf("sparse entry: %+v", h)
	}
	data, err := io.ReadAll(tr)
	if err != nil || len(data) != 1<<20 || string(data[4096:4099]) != "abc" || string(data[8192:8194]) != "de" {
		t.Errorf("sparse data: %d bytes, %v", len(data), err)
	}
	if h, err := tr.Next(); err != nil || h.Name != "f" || h.Typeflag != tar.TypeReg {
		t.Errorf("second entry: %+v, %v", h, err)
	}
	if _, err := tr.Next(); err != io.EOF {
		t.Errorf("after the end marker: %v, want EOF", err)
	}
}

func TestPAXRecord(t *testing.T) {
	for _, v := range []string{"", "x", strings.Repeat("y", 90), strings.Repeat("z", 994)} {
		r := PAXRecord("k", v)
		n, rest, _ := strings.Cut(r, " ")
		if n != strconv.Itoa(len(r)) || rest != "k="+v+"\n" {
			t.Errorf("PAXRecord(k, %d bytes) = %.20q… (%d bytes)", len(v), r, len(r))
		}
	}
}
