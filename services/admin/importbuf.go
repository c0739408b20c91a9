package admin

import (
	"encoding/binary"
	"fmt"
	"hash/maphash"
)

// importBlock is the size of one block of an importBuffer.
const importBlock = 1 << 20

// importBuffer holds the accepted edges of an import until every row is
// checked, packed into fixed blocks (user, entity key and create time; about
// 35 bytes an edge) so that millions of edges cost tens of MiB and growing
// the buffer never copies it.
type importBuffer struct {
	blocks [][]byte
	n      int
	// seen holds a 128-bit hash of every edge added, so that an edge
	// given twice in one import is written once (the odds that two
	// distinct edges of a few million share a hash are below 2^-80).
	seen         map[[2]uint64]struct{}
	seed1, seed2 maphash.Seed
}

// added reports whether an edge was added already, and remembers it.
func (b *importBuffer) added(user, key string) bool {
	if b.seen == nil {
		b.seen = map[[2]uint64]struct{}{}
		b.seed1, b.seed2 = maphash.MakeSeed(), maphash.MakeSeed()
	}
	edge := user + "\x00" + key
	h := [2]uint64{maphash.String(b.seed1, edge), maphash.String(b.seed2, edge)}
	if _, dup := b.seen[h]; dup {
		return true
	}
	b.seen[h] = struct{}{}
	return false
}

// add appends an edge; createNs is its create time in Unix ns, 0 when not
// given.
func (b *importBuffer) add(user, key string, createNs int64) {
	need := 2*binary.MaxVarintLen64 + len(user) + len(key) + binary.MaxVarintLen64
	if len(b.blocks) == 0 || cap(b.blocks[len(b.blocks)-1])-len(b.blocks[len(b.blocks)-1]) < need {
		b.blocks = append(b.blocks, make([]byte, 0, max(importBlock, need)))
	}
	blk := b.blocks[len(b.blocks)-1]
	blk = binary.AppendUvarint(blk, uint64(len(user)))
	blk = append(blk, user...)
	blk = binary.AppendUvarint(blk, uint64(len(key)))
	blk = append(blk, key...)
	blk = binary.AppendVarint(blk, createNs)
	b.blocks[len(b.blocks)-1] = blk
	b.n++
}

// each calls fn with every edge in the order added, up to batch at a time.
func (b *importBuffer) each(batch int, fn func(users, keys []string, createNs []int64) error) error {
	users, keys, times := make([]string, 0, batch), make([]string, 0, batch), make([]int64, 0, batch)
	flush := func() error {
		if len(users) == 0 {
			return nil
		}
		err := fn(users, keys, times)
		users, keys, times = users[:0], keys[:0], times[:0]
		return err
	}
	for _, blk := range b.blocks {
		for len(blk) > 0 {
			var (
				user, key string
				ns        int64
				ok        bool
			)
			if user, blk, ok = readString(blk); ok {
				key, blk, ok = readString(blk)
			}
			if ok {
				var n int
				ns, n = binary.Varint(blk)
				ok = n > 0
				blk = blk[max(n, 0):]
			}
			if !ok {
				return fmt.Errorf("import buffer is corrupt after %d edges", len(users))
			}
			users, keys, times = append(users, user), append(keys, key), append(times, ns)
			if len(users) == batch {
				if err := flush(); err != nil {
					return err
				}
			}
		}
	}
	return flush()
}

func readString(blk []byte) (string, []byte, bool) {
	l, n := binary.Uvarint(blk)
	if n <= 0 || uint64(len(blk)-n) < l {
		return "", nil, false
	}
	return string(blk[n : n+int(l)]), blk[n+int(l):], true
}
