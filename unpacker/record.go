package unpacker

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"hash"
	"hash/crc64"
	"io"
	"strconv"
	"strings"

	"github.com/vbatts/tar-split/tar/storage"
)

// Sparse files and tar-split metadata: why the unpacker records tar-split
// itself.
//
// A sparse entry (old GNU type 'S', PAX GNU.sparse 0.0/0.1/1.0) carries a
// map of data fragments and, as its payload in the tar, only those fragments
// (for 1.0 preceded by the map in text form). archive/tar hides all of it:
// Header.Size is the apparent size, the map is not exported, and Read
// returns the expanded file with holes as zeros. Reading through it costs
// CPU in proportion to the apparent size, which the image author picks (a
// 10 KiB layer can declare 2^62 bytes), and tar-split's own disassembler
// (asm.NewInputTarStream, which reads each payload through its fork of
// archive/tar) records the expanded bytes as the payload, so Reassemble gave
// a different tar than the layer's (measured: a 20 KiB GNU sparse tar of a
// 10 MiB file came back as 10 MiB; check failed).
//
// So the recorder sits between the tar stream and archive/tar's Reader and
// records what tar-split would, in tar-split's format (storage.Entry JSON,
// read back by NewEntryReader): every byte archive/tar reads while parsing
// headers is a segment, every payload byte goes into the entry's CRC64. For
// a sparse entry, the unpacker parses the map itself from those header bytes
// (segment) and PAX records, reads the data fragments straight from the
// recorder and writes them at their offsets (seeking over holes; ftruncate
// gives the apparent size). archive/tar still believes the payload is
// unread; when its Next skips it (Seek to the last byte, then read it), the
// recorder plays those bytes back without reading the stream ("phantom"
// bytes), and insists on exactly that call sequence and size, so any
// disagreement between our map parser and archive/tar is an error, never a
// silently shifted stream. The file entry then records the fragments'
// bytes (Size, CRC) and the map, and Reassemble reads the fragments back
// from the file on disk at those offsets: the layer's exact bytes.
//
// One parse instead of two (tar-split's goroutine parsed every layer again)
// also saves a pipe hop per byte.

// maxEntryHeaderBytes bounds the header bytes archive/tar may read for one
// entry (PAX records, GNU long names, sparse maps; archive/tar caps each at
// 1 MiB but not how many precede an entry). The recorder keeps them in
// memory until the entry starts.
const maxEntryHeaderBytes = 8 << 20

// trailerChunk is the segment size for bytes after the end-of-archive marker.
const trailerChunk = 1 << 20

var errSparseDesync = errors.New("unpacker: archive/tar and the sparse map parser disagree on an entry's data size")

type recMode int

const (
	recHeader  recMode = iota // bytes are headers: kept in seg
	recPayload                // bytes are an entry's payload: counted and CRC'd
	recTrailer                // after the end marker: segments of trailerChunk
)

type recorder struct {
	r      io.Reader
	packer *entryPacker // nil: Unpack without tar-split metadata
	mode   recMode
	seg    []byte
	crc    hash.Hash64
	n      int64 // payload bytes of the current entry
	pad    int   // padding archive/tar reads before the next header
	pos    int64 // bytes handed to archive/tar, phantom ones included
	// phantom is payload the unpacker read itself (sparse fragments) that
	// archive/tar has yet to skip.
	phantom int64
	err     error
}

func newRecorder(r io.Reader, p *entryPacker) *recorder {
	return &recorder{r: r, packer: p, crc: crc64.New(storage.CRCTable)}
}

func (c *recorder) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	if c.phantom > 0 {
		// archive/tar's skip reads the last byte after seeking.
		if c.phantom != 1 || len(p) == 0 {
			c.err = errSparseDesync
			return 0, c.err
		}
		p[0] = 0
		c.phantom = 0
		c.pos++
		return 1, nil
	}
	n, err := c.r.Read(p)
	c.pos += int64(n)
	switch c.mode {
	case recHeader:
		if len(c.seg)+n > maxEntryHeaderBytes {
			c.err = &LimitError{Value: maxEntryHeaderBytes, What: "one entry's tar headers (PAX records, long names, sparse map)"}
			return n, c.err
		}
		c.seg = append(c.seg, p[:n]...)
	case recPayload:
		if c.packer != nil {
			c.crc.Write(p[:n])
		}
		c.n += int64(n)
	case recTrailer:
		if c.packer != nil {
			c.seg = append(c.seg, p[:n]...)
			if len(c.seg) >= trailerChunk {
				if aerr := c.flushSegment(); aerr != nil {
					return n, aerr
				}
			}
		}
	}
	return n, err
}

// Seek serves archive/tar's skip of a payload: Seek(0) asks the position,
// Seek(k) skips k bytes. The unpacker drains every payload itself, so the
// only skip allowed is that of the phantom bytes, all but the last.
func (c *recorder) Seek(offset int64, whence int) (int64, error) {
	switch {
	case whence != io.SeekCurrent:
	case offset == 0:
		return c.pos, nil
	case c.phantom > 1 && offset == c.phantom-1:
		c.phantom = 1
		c.pos += offset
		return c.pos, nil
	}
	c.err = errSparseDesync
	return 0, c.err
}

func (c *recorder) flushSegment() error {
	if c.packer == nil || len(c.seg) == 0 {
		c.seg = c.seg[:0]
		return nil
	}
	_, err := c.packer.AddEntry(splitEntry{Entry: storage.Entry{Type: storage.SegmentType, Payload: c.seg}})
	c.seg = c.seg[:0]
	return err
}

// beginPayload ends an entry's headers (Next returned it).
func (c *recorder) beginPayload() error {
	err := c.flushSegment()
	c.mode, c.n = recPayload, 0
	c.crc.Reset()
	return err
}

// endEntry records the entry's payload, once the unpacker drained it.
func (c *recorder) endEntry(name string, sp *sparseMap) error {
	c.mode = recHeader
	c.pad = int(-c.n & (tarBlockSize - 1))
	if c.packer == nil {
		return nil
	}
	e := splitEntry{Entry: storage.Entry{Type: storage.FileType, Size: c.n}}
	e.SetName(name)
	if c.n > 0 {
		e.Payload = c.crc.Sum(nil)
	}
	if sp != nil {
		e.Sparse = sp.frags
	}
	_, err := c.packer.AddEntry(e)
	return err
}

// beginTrailer: Next reported the end; what it read (the marker) and what
// follows are segments.
func (c *recorder) beginTrailer() error {
	c.mode = recTrailer
	return c.flushSegment()
}

// sparseMap is a sparse entry's data fragments, as [offset, length] pairs
// in increasing order, and their total length (the payload bytes in the tar).
type sparseMap struct {
	frags [][2]int64
	data  int64
}

const (
	sparseNone = iota
	sparseOldGNU
	sparsePAX0 // GNU.sparse 0.0 (archive/tar turns it into a 0.1 map) and 0.1
	sparsePAX1
)

// sparseKind says which sparse format archive/tar applied to hdr, by the
// same rules as its Reader.
func sparseKind(hdr *tar.Header) int {
	if hdr.Typeflag == tar.TypeGNUSparse {
		return sparseOldGNU
	}
	rec := hdr.PAXRecords
	major, minor := rec["GNU.sparse.major"], rec["GNU.sparse.minor"]
	switch {
	case major == "0" && (minor == "0" || minor == "1"):
		return sparsePAX0
	case major == "1" && minor == "0":
		return sparsePAX1
	case major != "" || minor != "":
		return sparseNone
	case rec["GNU.sparse.map"] != "":
		return sparsePAX0
	}
	return sparseNone
}

// parseSparse returns the data map of a sparse entry whose headers archive/tar
// just read (c.seg), or nil if the entry is not sparse. archive/tar has
// already checked the map it parsed from the same bytes; any difference here
// is errSparseDesync.
func (c *recorder) parseSparse(hdr *tar.Header) (*sparseMap, error) {
	kind := sparseKind(hdr)
	if kind == sparseNone {
		return nil, nil
	}
	// Find the entry's own header after the previous padding and any
	// PAX ('x') and GNU long name/link ('L', 'K') headers.
	off := c.pad
	for {
		if off < 0 || off+tarBlockSize > len(c.seg) {
			return nil, errSparseDesync
		}
		blk := c.seg[off : off+tarBlockSize]
		if t := blk[156]; t != tar.TypeXHeader && t != tar.TypeGNULongName && t != tar.TypeGNULongLink {
			break
		}
		size, err := parseNumeric(blk[124:136])
		if err != nil || size < 0 || size > maxEntryHeaderBytes {
			return nil, errSparseDesync
		}
		off += tarBlockSize + int(size+tarBlockSize-1)&^(tarBlockSize-1)
	}
	main, rest := c.seg[off:off+tarBlockSize], c.seg[off+tarBlockSize:]
	// The payload size archive/tar works with: the header's, or PAX "size".
	phys, err := parseNumeric(main[124:136])
	if v := hdr.PAXRecords["size"]; v != "" {
		phys, err = strconv.ParseInt(v, 10, 64)
	}
	if err != nil {
		return nil, errSparseDesync
	}
	var frags [][2]int64
	switch kind {
	case sparseOldGNU:
		frags, err = oldGNUMap(main, rest)
	case sparsePAX0:
		frags, err = pax0Map(hdr.PAXRecords)
	case sparsePAX1:
		// The map is at the start of the payload, whole blocks of it, and
		// archive/tar read exactly those as part of Next.
		frags, err = pax1Map(rest)
		phys -= int64(len(rest))
	}
	if err != nil {
		return nil, err
	}
	sp := &sparseMap{frags: frags}
	end := int64(0)
	for _, f := range frags {
		if f[0] < 0 || f[1] < 0 || f[0] < end || f[0] > hdr.Size-f[1] {
			return nil, errSparseDesync
		}
		end = f[0] + f[1]
		sp.data += f[1]
	}
	// archive/tar refuses to read a sparse file whose fragments do not add
	// up to its payload (errMissData, errUnrefData); so do we.
	if sp.data != phys {
		return nil, fmt.Errorf("sparse map holds %d data bytes but the entry's payload is %d bytes: %w", sp.data, phys, tar.ErrHeader)
	}
	return sp, nil
}

// oldGNUMap reads the map of a GNU 'S' entry: 4 slots in the header, 21 in
// each extension block after it, each an offset and a length of 12 bytes;
// a slot starting with NUL ends the block's list, and a non-zero byte after
// the slots says an extension block follows.
func oldGNUMap(main, ext []byte) ([][2]int64, error) {
	var frags [][2]int64
	slots, more := main[386:386+4*24], main[386+4*24]
	for {
		for i := 0; i+24 <= len(slots); i += 24 {
			if slots[i] == 0 {
				break
			}
			o, err1 := parseNumeric(slots[i : i+12])
			n, err2 := parseNumeric(slots[i+12 : i+24])
			if err1 != nil || err2 != nil {
				return nil, errSparseDesync
			}
			frags = append(frags, [2]int64{o, n})
		}
		if more == 0 {
			break
		}
		if len(ext) < tarBlockSize {
			return nil, errSparseDesync
		}
		slots, more, ext = ext[:21*24], ext[21*24], ext[tarBlockSize:]
	}
	if len(ext) != 0 {
		return nil, errSparseDesync
	}
	return frags, nil
}

// pax0Map reads GNU.sparse.numblocks and GNU.sparse.map ("off,len,...").
func pax0Map(rec map[string]string) ([][2]int64, error) {
	n, err := strconv.ParseInt(rec["GNU.sparse.numblocks"], 10, 0)
	if err != nil || n < 0 {
		return nil, errSparseDesync
	}
	nums := strings.Split(rec["GNU.sparse.map"], ",")
	if len(nums) == 1 && nums[0] == "" {
		nums = nil
	}
	if int64(len(nums)) != 2*n {
		return nil, errSparseDesync
	}
	return pairs(nums)
}

// pax1Map reads a GNU sparse 1.0 map: decimal numbers one per line, the
// count then offset/length pairs, padded with NULs to whole blocks.
func pax1Map(b []byte) ([][2]int64, error) {
	lines := strings.Split(string(b), "\n")
	// The last element is what follows the last newline: block padding.
	if len(lines) < 2 {
		return nil, errSparseDesync
	}
	n, err := strconv.ParseInt(lines[0], 10, 0)
	if err != nil || n < 0 || n > int64(len(lines)) || int64(len(lines)-2) < 2*n {
		return nil, errSparseDesync
	}
	frags, err := pairs(lines[1 : 1+2*n])
	if err != nil {
		return nil, err
	}
	// archive/tar reads blocks only until it has all the lines it needs.
	used := len(strings.Join(lines[:1+2*n], "\n")) + 1
	if (used+tarBlockSize-1)&^(tarBlockSize-1) != len(b) {
		return nil, errSparseDesync
	}
	return frags, nil
}

func pairs(nums []string) ([][2]int64, error) {
	frags := make([][2]int64, 0, len(nums)/2)
	for i := 0; i+1 < len(nums); i += 2 {
		o, err1 := strconv.ParseInt(nums[i], 10, 64)
		n, err2 := strconv.ParseInt(nums[i+1], 10, 64)
		if err1 != nil || err2 != nil {
			return nil, errSparseDesync
		}
		frags = append(frags, [2]int64{o, n})
	}
	return frags, nil
}

// parseNumeric reads a tar number field: octal text (NUL or space padded)
// or, with the high bit of the first byte set, GNU base-256 (big-endian
// two's complement).
func parseNumeric(b []byte) (int64, error) {
	if len(b) > 0 && b[0]&0x80 != 0 {
		var inv byte
		if b[0]&0x40 != 0 {
			inv = 0xff
		}
		var x uint64
		for i, c := range b {
			c ^= inv
			if i == 0 {
				c &= 0x7f
			}
			if x>>56 != 0 {
				return 0, errSparseDesync
			}
			x = x<<8 | uint64(c)
		}
		if x>>63 != 0 {
			return 0, errSparseDesync
		}
		if inv == 0xff {
			return ^int64(x), nil
		}
		return int64(x), nil
	}
	b = bytes.Trim(b, " \x00")
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	if len(b) == 0 {
		return 0, nil
	}
	x, err := strconv.ParseUint(string(b), 8, 64)
	if err != nil || x>>63 != 0 {
		return 0, errSparseDesync
	}
	return int64(x), nil
}
