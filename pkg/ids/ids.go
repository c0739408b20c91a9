// Package ids makes activity ids: 64-bit, time-sortable, and written as 13
// Crockford base32 characters whose string order is their numeric order.
//
// Layout, from the most significant bit:
//
//	1 bit    zero
//	41 bits  milliseconds since 2024-01-01 UTC (until 2093)
//	10 bits  node: random per process
//	12 bits  sequence within the millisecond, from a random start
//
// Two processes collide only with the same node, millisecond and sequence;
// the poster also appends each new activity on a subject that must be new,
// so a collision is detected and retried, never stored.
package ids

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"strings"
	"sync"
	"time"
)

// ID is an activity id.
type ID uint64

// Epoch is time zero of ids.
var Epoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

const (
	nodeBits = 10
	seqBits  = 12
	timeBits = 41
	// Len is the length of an id's string form.
	Len      = 13
	alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
)

// Time returns when the id was made (millisecond precision).
func (id ID) Time() time.Time {
	return Epoch.Add(time.Duration(uint64(id)>>(nodeBits+seqBits)) * time.Millisecond)
}

// Before returns the smallest id of the millisecond d before id's: every
// id made at least d earlier is below it.
func (id ID) Before(d time.Duration) ID {
	ms := int64(uint64(id) >> (nodeBits + seqBits))
	ms = max(ms-d.Milliseconds(), 0)
	return ID(uint64(ms) << (nodeBits + seqBits))
}

// At returns the smallest id of the millisecond of t: every id made at or
// after t is at or above it.
func At(t time.Time) ID {
	ms := max(t.Sub(Epoch).Milliseconds(), 0)
	return ID(uint64(ms) << (nodeBits + seqBits))
}

// String returns the 13-character form.
func (id ID) String() string {
	var b [Len]byte
	v := uint64(id)
	for i := Len - 1; i >= 0; i-- {
		b[i] = alphabet[v&31]
		v >>= 5
	}
	return string(b[:])
}

// Bytes returns the 8-byte big-endian form, whose byte order is its numeric
// order; timelines store it.
func (id ID) Bytes() [8]byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(id))
	return b
}

// FromBytes reads the 8-byte form.
func FromBytes(b []byte) ID { return ID(binary.BigEndian.Uint64(b)) }

// ErrMalformed means a string is not an id.
var ErrMalformed = errors.New("malformed activity id")

// Parse reads the 13-character form (case-insensitive).
func Parse(s string) (ID, error) {
	if len(s) != Len {
		return 0, ErrMalformed
	}
	var v uint64
	for i := range Len {
		c := s[i]
		if c >= 'a' && c <= 'z' {
			c -= 'a' - 'A'
		}
		d := strings.IndexByte(alphabet, c)
		if d < 0 {
			return 0, ErrMalformed
		}
		v = v<<5 | uint64(d)
	}
	// 13 characters carry 65 bits: the top one must be zero, and so must
	// the sign bit.
	if s[0] > '7' || v>>63 != 0 {
		return 0, ErrMalformed
	}
	return ID(v), nil
}

// Generator makes ids for one process.
type Generator struct {
	mu     sync.Mutex
	node   uint64
	lastMs uint64
	seq    uint64
	now    func() time.Time
}

// NewGenerator returns a Generator with a random node.
func NewGenerator() *Generator {
	return &Generator{node: randomBits(nodeBits), now: time.Now}
}

func randomBits(n int) uint64 {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return binary.LittleEndian.Uint64(b[:]) & (1<<n - 1)
}

// Next returns a new id, later than any this generator returned before.
func (g *Generator) Next() ID {
	g.mu.Lock()
	defer g.mu.Unlock()
	ms := uint64(max(g.now().Sub(Epoch).Milliseconds(), 0))
	if ms < g.lastMs {
		ms = g.lastMs // the clock stepped back: stay monotonic
	}
	if ms == g.lastMs {
		g.seq = (g.seq + 1) & (1<<seqBits - 1)
		if g.seq == 0 {
			// The sequence (started below 2048) wrapped: this millisecond
			// is spent, borrow the next.
			ms++
			g.seq = randomBits(seqBits - 1)
		}
	} else {
		g.seq = randomBits(seqBits - 1)
	}
	g.lastMs = ms
	return ID(ms<<(nodeBits+seqBits) | g.node<<seqBits | g.seq)
}
