// Package profilestore is the Redis projection of the PROFILES stream: each
// profile as of the newest event applied, plus the indexes that list
// profiles by id, by department and by manager.
//
// Keys (hash tags keep what one script touches in one slot):
//
//	tidings:profile:{<user id>}        hash: seq, pb (Profile), dept, mgr, active
//	tidings:profiles:all               sorted set of user ids (lexicographic)
//	tidings:profiles:dept:{<dept>}     sorted set of user ids in a department
//	tidings:profiles:mgr:{<manager>}   sorted set of a manager's direct reports
//
// Apply is idempotent and ordered by stream sequence: an event older than the
// one applied is ignored, so redeliveries and concurrent appliers (the
// service's write-through and the worker's projector) converge. The indexes
// are hints that reads verify against the profile hash; a stale index entry
// left by a crash or a race is skipped and removed when read.
package profilestore

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"

	"github.com/tidingshq/tidings/pkg/redisx"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

const maxListRounds = 4

// Key is the hash of a user's profile: the tidings.v1.Profile message is in
// its field Field.
func (s *Store) Key(userID string) string { return s.ks.Key("profile:{" + userID + "}") }

func (s *Store) keyAll() string { return s.ks.Key("profiles:all") }

// Field is the field of Key that holds the profile.
const Field = "pb"

func (s *Store) deptKey(dept string) string   { return s.ks.Key("profiles:dept:{" + dept + "}") }
func (s *Store) managerKey(mgr string) string { return s.ks.Key("profiles:mgr:{" + mgr + "}") }

// applyScript stores a profile unless a newer event was applied already. It
// returns {applied, dept, manager}: the department and manager stored before
// (when applied) or now (when not).
var applyScript = redisx.NewScript(`
local cur = redis.call('HMGET', KEYS[1], 'seq', 'dept', 'mgr')
local curseq = tonumber(cur[1]) or 0
if curseq >= tonumber(ARGV[1]) then
  return {0, cur[2] or '', cur[3] or ''}
end
redis.call('HSET', KEYS[1], 'seq', ARGV[1], 'pb', ARGV[2], 'dept', ARGV[3], 'mgr', ARGV[4], 'active', ARGV[5])
return {1, cur[2] or '', cur[3] or ''}
`)

// Store reads and writes the profile projection.
type Store struct {
	rdb redis.UniversalClient
	ks  *redisx.Keyspace
}

// New returns a Store over the keys of ks.
func New(rdb redis.UniversalClient, ks *redisx.Keyspace) *Store { return &Store{rdb: rdb, ks: ks} }

// Apply projects one profile event at stream sequence seq.
func (s *Store) Apply(ctx context.Context, seq uint64, p *tidingsv1.Profile) error {
	data, err := proto.Marshal(p)
	if err != nil {
		return fmt.Errorf("encode profile %s: %w", p.GetUserId(), err)
	}
	res, err := applyScript.Run(ctx, s.rdb, []string{s.Key(p.GetUserId())},
		seq, data, p.GetDepartment(), p.GetManagerId(), boolFlag(p.GetActive())).Slice()
	if err != nil {
		return fmt.Errorf("apply profile %s: %w", p.GetUserId(), err)
	}
	applied := res[0].(int64) == 1
	before := [2]string{res[1].(string), res[2].(string)}
	now := [2]string{p.GetDepartment(), p.GetManagerId()}
	if !applied {
		// A newer event is in place: make sure its index entries exist.
		now = before
	}
	id := p.GetUserId()
	_, err = s.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		pipe.ZAdd(ctx, s.keyAll(), redis.Z{Member: id})
		if now[0] != "" {
			pipe.ZAdd(ctx, s.deptKey(now[0]), redis.Z{Member: id})
		}
		if now[1] != "" {
			pipe.ZAdd(ctx, s.managerKey(now[1]), redis.Z{Member: id})
		}
		if before[0] != "" && before[0] != now[0] {
			pipe.ZRem(ctx, s.deptKey(before[0]), id)
		}
		if before[1] != "" && before[1] != now[1] {
			pipe.ZRem(ctx, s.managerKey(before[1]), id)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("index profile %s: %w", id, err)
	}
	return nil
}

func boolFlag(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// ErrNotFound means there is no such profile.
var ErrNotFound = errors.New("profile not found")

// Get returns one profile.
func (s *Store) Get(ctx context.Context, userID string) (*tidingsv1.Profile, error) {
	data, err := s.rdb.HGet(ctx, s.Key(userID), Field).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("read profile %s: %w", userID, err)
	}
	return decode(userID, data)
}

// Decode decodes the profile of userID, as Field holds it.
func Decode(userID string, data []byte) (*tidingsv1.Profile, error) {
	return decode(userID, data)
}

func decode(userID string, data []byte) (*tidingsv1.Profile, error) {
	p := &tidingsv1.Profile{}
	if err := proto.Unmarshal(data, p); err != nil {
		return nil, fmt.Errorf("decode profile %s: %w", userID, err)
	}
	return p, nil
}

// GetMany returns the profiles of ids that exist, keyed by id, in one round
// trip (one per node on a cluster).
func (s *Store) GetMany(ctx context.Context, ids []string) (map[string]*tidingsv1.Profile, error) {
	return redisx.Run(ctx, s.rdb, func(pipe redis.Pipeliner) redisx.Result[map[string]*tidingsv1.Profile] {
		return s.QueueGetMany(ctx, pipe, ids)
	})
}

// QueueGetMany queues GetMany on pipe.
func (s *Store) QueueGetMany(ctx context.Context, pipe redis.Pipeliner, ids []string) redisx.Result[map[string]*tidingsv1.Profile] {
	cmds := make([]*redis.StringCmd, len(ids))
	for i, id := range ids {
		cmds[i] = pipe.HGet(ctx, s.Key(id), Field)
	}
	return func() (map[string]*tidingsv1.Profile, error) {
		out := make(map[string]*tidingsv1.Profile, len(ids))
		for i, cmd := range cmds {
			data, err := cmd.Bytes()
			if errors.Is(err, redis.Nil) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("read profile %s: %w", ids[i], err)
			}
			p, err := decode(ids[i], data)
			if err != nil {
				return nil, err
			}
			out[ids[i]] = p
		}
		return out, nil
	}
}

// ListQuery selects profiles to list.
type ListQuery struct {
	// Department, when set, lists only that department.
	Department string
	// ManagerID, when set, lists only that manager's direct reports.
	ManagerID string
	// IncludeInactive lists deactivated profiles too.
	IncludeInactive bool
	// After is the user id the page starts after; empty for the first page.
	After string
	// Limit is the page size.
	Limit int
}

// List returns up to q.Limit profiles ordered by user id, and whether more
// may follow.
func (s *Store) List(ctx context.Context, q ListQuery) (profiles []*tidingsv1.Profile, more bool, err error) {
	index := s.keyAll()
	switch {
	case q.Department != "":
		index = s.deptKey(q.Department)
	case q.ManagerID != "":
		index = s.managerKey(q.ManagerID)
	}
	after := q.After
	for round := 0; round < maxListRounds && len(profiles) < q.Limit; round++ {
		want := q.Limit - len(profiles)
		from := "-"
		if after != "" {
			from = "(" + after
		}
		// One extra id tells whether more follow.
		ids, err := s.rdb.ZRangeByLex(ctx, index, &redis.ZRangeBy{Min: from, Max: "+", Count: int64(want + 1)}).Result()
		if err != nil {
			return nil, false, fmt.Errorf("list profiles: %w", err)
		}
		more = len(ids) > want
		if more {
			ids = ids[:want]
		}
		if len(ids) == 0 {
			break
		}
		after = ids[len(ids)-1]
		page, err := s.getListed(ctx, ids, index, q)
		if err != nil {
			return nil, false, err
		}
		profiles = append(profiles, page...)
		if !more {
			break
		}
	}
	return profiles, more, nil
}

// getListed reads listed ids, dropping (and unindexing) stale entries and,
// unless asked for, inactive profiles.
func (s *Store) getListed(ctx context.Context, ids []string, index string, q ListQuery) ([]*tidingsv1.Profile, error) {
	found, err := s.GetMany(ctx, ids)
	if err != nil {
		return nil, err
	}
	out := make([]*tidingsv1.Profile, 0, len(ids))
	var stale []any
	for _, id := range ids {
		p, ok := found[id]
		switch {
		case !ok,
			q.Department != "" && p.GetDepartment() != q.Department,
			q.ManagerID != "" && p.GetManagerId() != q.ManagerID:
			stale = append(stale, id)
		case !p.GetActive() && !q.IncludeInactive:
		default:
			out = append(out, p)
		}
	}
	if len(stale) > 0 {
		if err := s.rdb.ZRem(ctx, index, stale...).Err(); err != nil {
			return nil, fmt.Errorf("unindex stale profiles: %w", err)
		}
	}
	return out, nil
}

// Wipe deletes the whole projection, before a rebuild.
func (s *Store) Wipe(ctx context.Context) error {
	_, err := redisx.DeleteMatching(ctx, s.rdb, s.ks.Key("profile*"))
	return err
}
