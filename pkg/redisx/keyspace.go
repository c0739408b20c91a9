package redisx

import (
	"strconv"
	"sync/atomic"
)

// Keyspace names the keys of one generation of the projections. The first
// generation's keys are "tidings:<name>"; generation n's are
// "tidings:g<n>:<name>", so a rebuild can write a new generation beside the
// one readers use and switch them over at once (Switch), then drop the old
// one. Hash tags stay inside <name>, so a key lands in the same cluster slot
// in every generation.
//
// Stores built over one Keyspace switch together. What is not derived from
// the log (when a user last read their timeline) lives outside generations,
// under Prefix.
type Keyspace struct {
	gen    atomic.Uint64
	prefix atomic.Pointer[string]
}

// NewKeyspace returns the keyspace of generation gen.
func NewKeyspace(gen uint64) *Keyspace {
	k := &Keyspace{}
	k.Switch(gen)
	return k
}

// GenerationPrefix is the prefix of generation gen's keys.
func GenerationPrefix(gen uint64) string {
	if gen == 0 {
		return Prefix
	}
	return Prefix + "g" + strconv.FormatUint(gen, 10) + ":"
}

// Key returns the key of name in the current generation.
func (k *Keyspace) Key(name string) string { return *k.prefix.Load() + name }

// Prefix returns the prefix of the current generation's keys.
func (k *Keyspace) Prefix() string { return *k.prefix.Load() }

// Generation returns the current generation.
func (k *Keyspace) Generation() uint64 { return k.gen.Load() }

// Switch makes gen the current generation of every store over k.
func (k *Keyspace) Switch(gen uint64) {
	p := GenerationPrefix(gen)
	k.prefix.Store(&p)
	k.gen.Store(gen)
}
