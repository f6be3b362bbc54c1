// Package rawtar is a test helper: it writes by hand the tar blocks that
// archive/tar will not write (a PAX header of any size, GNU.sparse records),
// so that tests can feed the unpacker what an image author could. It is
// shared by unpacker's unit tests and the acceptance tests (which cannot
// share acceptance/internal with unpacker), and imports only the standard
// library (internal/depcheck pins that).
package rawtar

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// BlockSize is the tar block size.
const BlockSize = 512

// Header is a ustar header block (mode 0644, owner 0:0), checksum included.
func Header(name string, typ byte, size int64, mtime time.Time) []byte {
	blk := make([]byte, BlockSize)
	copy(blk, name)
	copy(blk[100:], "0000644\x00")
	copy(blk[108:], "0000000\x00")
	copy(blk[116:], "0000000\x00")
	copy(blk[124:], fmt.Sprintf("%011o\x00", size))
	copy(blk[136:], fmt.Sprintf("%011o\x00", mtime.Unix()))
	blk[156] = typ
	copy(blk[257:], "ustar\x0000")
	// The checksum is summed with its own field as spaces.
	copy(blk[148:], "        ")
	sum := 0
	for _, b := range blk {
		sum += int(b)
	}
	copy(blk[148:], fmt.Sprintf("%06o\x00 ", sum))
	return blk
}

// PAXRecord is one PAX record, "<len> k=v\n", where len counts itself.
func PAXRecord(k, v string) string {
	r := " " + k + "=" + v + "\n"
	l := len(r) + 1
	for len(strconv.Itoa(l))+len(r) != l {
		l++
	}
	return strconv.Itoa(l) + r
}

// Pad pads b with zeros to a whole number of blocks.
func Pad(b []byte) []byte {
	return append(b, make([]byte, -len(b)&(BlockSize-1))...)
}

// SparsePAX01Head is the headers of a GNU sparse 0.1 entry: a PAX header
// with the map (frags, each an offset and a length) and the apparent size,
// then the header of a payload of n bytes, which should follow.
func SparsePAX01Head(name string, size int64, frags [][2]int64, n int64, mtime time.Time) []byte {
	var m []string
	for _, f := range frags {
		m = append(m, fmt.Sprint(f[0]), fmt.Sprint(f[1]))
	}
	recs := PAXRecord("GNU.sparse.major", "0") + PAXRecord("GNU.sparse.minor", "1") +
		PAXRecord("GNU.sparse.name", name) + PAXRecord("GNU.sparse.realsize", fmt.Sprint(size)) +
		PAXRecord("GNU.sparse.numblocks", fmt.Sprint(len(frags))) + PAXRecord("GNU.sparse.map", strings.Join(m, ","))
	out := append(Header("PaxHeaders/"+name, 'x', int64(len(recs)), mtime), Pad([]byte(recs))...)
	return append(out, Header("GNUSparseFile.0/"+name, '0', n, mtime)...)
}
