// Package notificationstore keeps each user's notifications in Redis,
// folded into items: one item per kind of notification, target, read era
// and time window, naming the actors and how many there were.
//
//	tidings:nidx:{<user>}          sorted set: item → its newest instance (ms)
//	tidings:nmem:{<user>}<item>    sorted set: the item's actors → their
//	                               newest instance in it (ms)
//	tidings:nobj:{<user>}          hash: item → "<ms>|<object>" of its newest
//	                               instance (the comment, reaction kind or
//	                               activity it shows)
//	tidings:nmark:{<user>}         sorted set: read marks (ms)
//
// An item is "<kind>|<target>|<era>|<window>". An instance (a notification
// before folding: an actor, a time, a kind and a target) lands in the item
// of its kind and target whose era is the newest read mark before it, and
// whose window is (ms - era) / Config.Window. So what is read stays as it
// was, and what happens after a mark starts new items; windows count from
// the mark.
//
// Every write is a function of the instance and the marks only, never of
// what arrived before, so instances may come twice, late or out of order:
// actors are set members whose score only grows; an item's time is its
// newest actor's. A mark that arrives after instances newer than itself
// (written, by a concurrent worker, while the mark was on its way) moves
// those instances into the items of the new era; the result is the one the
// log order gives, except that an actor with instances on both sides of
// such a mark is kept in the newer item only.
//
// Each user keeps at most Config.Cap items, none older than Config.MaxAge
// before the user's newest; both are measured on the items themselves,
// never on the clock, so a rebuild keeps the same ones. All of a user's
// keys share the user's hash tag; the scripts build item keys from the
// prefix they are given (the same tag, the same slot).
package notificationstore

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tidingshq/tidings/pkg/redisx"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

// Config bounds and folds notifications.
type Config struct {
	// Window is how long after the first of them notifications of the
	// same kind and target fold into one item (counted from the user's last
	// read mark).
	Window time.Duration
	// Cap is how many items a user keeps.
	Cap int
	// MaxAge is how much older than the user's newest an item may be.
	MaxAge time.Duration
}

// DefaultConfig folds a day, keeps 200 items of at most 90 days.
func DefaultConfig() Config {
	return Config{Window: 24 * time.Hour, Cap: 200, MaxAge: 90 * 24 * time.Hour}
}

func (s *Store) indexKey(user string) string { return s.ks.Key("nidx:{" + user + "}") }
func (s *Store) objKey(user string) string   { return s.ks.Key("nobj:{" + user + "}") }
func (s *Store) markKey(user string) string  { return s.ks.Key("nmark:{" + user + "}") }
func (s *Store) memPrefix(user string) string {
	return s.ks.Key("nmem:{" + user + "}")
}

// lib holds what the scripts share. KEYS are, in every script: 1 the
// index, 2 the marks, 3 the objects, 4 the actors' key prefix, 5 the
// user's muted activities.
const lib = `
local function fmt(n) return string.format('%d', n) end
local function drop(item)
  redis.call('ZREM', KEYS[1], item)
  redis.call('DEL', KEYS[4] .. item)
  redis.call('HDEL', KEYS[3], item)
end
local function objOf(item)
  local o = redis.call('HGET', KEYS[3], item)
  if not o then return nil, '' end
  local sep = string.find(o, '|', 1, true)
  return tonumber(string.sub(o, 1, sep - 1)), string.sub(o, sep + 1)
end
local function setObj(item, ms, obj)
  local oms, oobj = objOf(item)
  if oms and (ms < oms or (ms == oms and obj <= oobj)) then return end
  redis.call('HSET', KEYS[3], item, fmt(ms) .. '|' .. obj)
end
local function eraOf(ms)
  local m = redis.call('ZREVRANGEBYSCORE', KEYS[2], '(' .. fmt(ms), '-inf', 'LIMIT', 0, 1)
  return tonumber(m[1] or '0')
end
local function add(base, actor, ms, obj, window)
  local era = eraOf(ms)
  local item = base .. '|' .. fmt(era) .. '|' .. fmt(math.floor((ms - era) / window))
  local ch = redis.call('ZADD', KEYS[4] .. item, 'GT', 'CH', ms, actor)
  local cur = redis.call('ZSCORE', KEYS[1], item)
  if not cur or tonumber(cur) < ms then
    redis.call('ZADD', KEYS[1], ms, item)
    ch = 1
  end
  setObj(item, ms, obj)
  return ch
end
local function trim(cap, maxAge)
  local top = redis.call('ZREVRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  if not top[2] then return end
  for _, item in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. fmt(tonumber(top[2]) - maxAge))) do
    drop(item)
  end
  local n = redis.call('ZCARD', KEYS[1])
  if n > cap then
    for _, item in ipairs(redis.call('ZRANGE', KEYS[1], 0, n - cap - 1)) do drop(item) end
  end
end
`

// addScript adds one instance: ARGV[1] the item's base ("<kind>|<target>"),
// ARGV[2] the actor, ARGV[3] when (ms), ARGV[4] the object, ARGV[5] the
// activity whose mute silences it ("" none), ARGV[6] the window (ms),
// ARGV[7] the cap, ARGV[8] the longest age (ms). Returns 1 when an item
// changed, 0 when it held the instance already, -1 when it was not
// written (muted, or older than what is kept).
var addScript = redisx.NewScript(lib + `
local ms = tonumber(ARGV[3])
if ARGV[5] ~= '' and redis.call('ZSCORE', KEYS[5], ARGV[5]) then return -1 end
local top = redis.call('ZREVRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if top[2] and ms < tonumber(top[2]) - tonumber(ARGV[8]) then return -1 end
local ch = add(ARGV[1], ARGV[2], ms, ARGV[4], tonumber(ARGV[6]))
trim(tonumber(ARGV[7]), tonumber(ARGV[8]))
return ch
`)

// markScript records the read mark ARGV[1] (ms), moves what happened after
// it out of items of older eras, and forgets marks too old to matter:
// ARGV[2] the window, ARGV[3] the longest age. Returns 1 for a new mark.
var markScript = redisx.NewScript(lib + `
local m = tonumber(ARGV[1])
if redis.call('ZSCORE', KEYS[2], fmt(m)) then return 0 end
redis.call('ZADD', KEYS[2], m, fmt(m))
local window = tonumber(ARGV[2])
for _, item in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. fmt(m), '+inf')) do
  local base, era = string.match(item, '^(.*)|(%d+)|%d+$')
  if base and tonumber(era) < m then
    local mem = KEYS[4] .. item
    local moved = redis.call('ZRANGEBYSCORE', mem, '(' .. fmt(m), '+inf', 'WITHSCORES')
    local oms, oobj = objOf(item)
    redis.call('ZREMRANGEBYSCORE', mem, '(' .. fmt(m), '+inf')
    local left = redis.call('ZREVRANGE', mem, 0, 0, 'WITHSCORES')
    if left[2] then
      redis.call('ZADD', KEYS[1], left[2], item)
      redis.call('HSET', KEYS[3], item, fmt(tonumber(left[2])) .. '|')
    else
      drop(item)
    end
    for i = 1, #moved, 2 do
      local ms = tonumber(moved[i + 1])
      local obj = ''
      if oms == ms then obj = oobj end
      add(base, moved[i], ms, obj, window)
    end
  end
end
local newest = redis.call('ZREVRANGE', KEYS[2], 0, 0)
local below = redis.call('ZREVRANGEBYSCORE', KEYS[2], '(' .. fmt(tonumber(newest[1]) - tonumber(ARGV[3])), '-inf', 'LIMIT', 0, 1)
if below[1] then redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. below[1]) end
return 1
`)

// pageScript reads items newest first: ARGV[1] the cursor's time ("" from
// the newest), ARGV[2] the cursor's item, ARGV[3] how many, ARGV[4] the
// actors to name per item, ARGV[5] '1' to stop at the first read item,
// ARGV[6] the oldest time to read (empty for any). It returns the newest mark,
// whether more items follow, then per item: item, time, actor count,
// object, newest actors.
var pageScript = redisx.NewScript(`
local marks = redis.call('ZREVRANGE', KEYS[2], 0, 0)
local mark = tonumber(marks[1] or '0')
local out = {marks[1] or '0', 0}
local max = '+inf'
local cms = nil
if ARGV[1] ~= '' then
  max = ARGV[1]
  cms = tonumber(ARGV[1])
end
local min = '-inf'
if ARGV[6] ~= '' then min = ARGV[6] end
local limit = tonumber(ARGV[3])
local batch = limit + 16
local got = 0
local off = 0
while true do
  local zs = redis.call('ZREVRANGEBYSCORE', KEYS[1], max, min, 'WITHSCORES', 'LIMIT', off, batch)
  for i = 1, #zs, 2 do
    local item, score = zs[i], tonumber(zs[i + 1])
    if ARGV[5] == '1' and score <= mark then return out end
    if not (cms and score == cms and item >= ARGV[2]) then
      if got == limit then
        out[2] = 1
        return out
      end
      local mem = KEYS[4] .. item
      local o = redis.call('HGET', KEYS[3], item) or '|'
      local sep = string.find(o, '|', 1, true)
      table.insert(out, {item, zs[i + 1], redis.call('ZCARD', mem), string.sub(o, sep + 1),
        redis.call('ZREVRANGE', mem, 0, tonumber(ARGV[4]) - 1)})
      got = got + 1
    end
  end
  if #zs < 2 * batch then return out end
  off = off + batch
end
`)

// Store reads and writes notifications.
type Store struct {
	rdb  redis.UniversalClient
	ks   *redisx.Keyspace
	cfg  Config
	mute func(user string) string
}

// New returns a Store over the keys of ks; muteKey names a user's set of
// muted activities (pkg/userstatestore), which writes read to leave muted
// activities out.
func New(rdb redis.UniversalClient, ks *redisx.Keyspace, cfg Config, muteKey func(user string) string) *Store {
	return &Store{rdb: rdb, ks: ks, cfg: cfg, mute: muteKey}
}

// Config returns how the store folds and bounds.
func (s *Store) Config() Config { return s.cfg }

func (s *Store) keys(user string) []string {
	return []string{s.indexKey(user), s.markKey(user), s.objKey(user), s.memPrefix(user), s.mute(user)}
}

// Base is the part of an item's name that its instances share: the kind
// and the target.
func Base(kind tidingsv1.NotificationKind, target string) string {
	return strconv.Itoa(int(kind)) + "|" + target
}

// Instance is one notification before folding.
type Instance struct {
	// User is who is notified.
	User string
	Kind tidingsv1.NotificationKind
	// Target is what the item is about: an activity id, "<activity
	// id>/<comment id>" for a comment, a record key, or "" (the user).
	Target string
	// Actor is who did it: a user id, or "app:<app id>".
	Actor string
	// Ms is when (Unix ms), from the event.
	Ms int64
	// Object is what the item shows of its newest instance: a comment id,
	// a reaction kind, an activity id.
	Object string
	// MutedBy is the activity whose mute by User silences the instance
	// ("" for none).
	MutedBy string
}

// QueueAdd queues, on pipe, the write of one instance; its result is 1
// when an item changed, 0 when it held the instance already, and -1 when
// the instance was not written (muted, or too old to keep).
func (s *Store) QueueAdd(ctx context.Context, pipe redis.Pipeliner, in Instance) redisx.Result[int64] {
	cmd := addScript.EvalSha(ctx, pipe, s.keys(in.User),
		Base(in.Kind, in.Target), in.Actor, in.Ms, in.Object, in.MutedBy,
		s.cfg.Window.Milliseconds(), s.cfg.Cap, s.cfg.MaxAge.Milliseconds())
	return func() (int64, error) {
		n, err := cmd.Int64()
		if err != nil {
			return 0, fmt.Errorf("notify %s: %w", in.User, err)
		}
		return n, nil
	}
}

// QueueMark queues, on pipe, a read mark of user at ms; its result is
// whether the mark was new.
func (s *Store) QueueMark(ctx context.Context, pipe redis.Pipeliner, user string, ms int64) redisx.Result[bool] {
	cmd := markScript.EvalSha(ctx, pipe, s.keys(user), ms, s.cfg.Window.Milliseconds(), s.cfg.MaxAge.Milliseconds())
	return func() (bool, error) {
		n, err := cmd.Int64()
		if err != nil {
			return false, fmt.Errorf("mark notifications of %s read: %w", user, err)
		}
		return n > 0, nil
	}
}

// Item is one folded notification as stored.
type Item struct {
	// Name is the item's name in Redis: "<kind>|<target>|<era>|<window>".
	Name   string
	Kind   tidingsv1.NotificationKind
	Target string
	// Ms is when its newest actor acted.
	Ms int64
	// Count is how many actors it holds.
	Count int64
	// Object is what its newest instance showed.
	Object string
	// Actors are the newest actors, newest first.
	Actors []string
	Read   bool
}

// ID is the item's id on the wire.
func (it Item) ID() string { return base64.RawURLEncoding.EncodeToString([]byte(it.Name)) }

// Cursor is where a page of items starts: after the item with this time
// and name. The zero cursor starts at the newest.
type Cursor struct {
	Ms   int64
	Name string
}

// IsZero reports whether c starts at the newest.
func (c Cursor) IsZero() bool { return c.Name == "" }

// String encodes the cursor for a page token.
func (c Cursor) String() string { return strconv.FormatInt(c.Ms, 10) + "|" + c.Name }

// ParseCursor decodes a cursor made by Cursor.String.
func ParseCursor(s string) (Cursor, error) {
	if s == "" {
		return Cursor{}, nil
	}
	ms, name, ok := strings.Cut(s, "|")
	n, err := strconv.ParseInt(ms, 10, 64)
	if !ok || err != nil || name == "" {
		return Cursor{}, errors.New("malformed cursor")
	}
	return Cursor{Ms: n, Name: name}, nil
}

// CursorOf returns the cursor just after it.
func CursorOf(it Item) Cursor { return Cursor{Ms: it.Ms, Name: it.Name} }

// Query says which items a Page reads.
type Query struct {
	After Cursor
	Limit int
	// Actors is how many actors to name per item (3 when zero).
	Actors int
	// UnreadOnly stops at the first read item.
	UnreadOnly bool
	// SinceMs, when set, stops at items older than it.
	SinceMs int64
}

// Page returns items of a user newest first, whether more follow, and the
// user's newest read mark (ms), in one round trip.
func (s *Store) Page(ctx context.Context, user string, q Query) ([]Item, bool, int64, error) {
	if q.Actors == 0 {
		q.Actors = 3
	}
	cursorMs := ""
	if !q.After.IsZero() {
		cursorMs = strconv.FormatInt(q.After.Ms, 10)
	}
	unread := "0"
	if q.UnreadOnly {
		unread = "1"
	}
	since := ""
	if q.SinceMs > 0 {
		since = strconv.FormatInt(q.SinceMs, 10)
	}
	res, err := redisx.Run(ctx, s.rdb, func(pipe redis.Pipeliner) redisx.Result[[]any] {
		cmd := pageScript.EvalSha(ctx, pipe, s.keys(user), cursorMs, q.After.Name, q.Limit, q.Actors, unread, since)
		return func() ([]any, error) { return cmd.Slice() }
	})
	if err != nil {
		return nil, false, 0, fmt.Errorf("read notifications of %s: %w", user, err)
	}
	return decodePage(res)
}

func decodePage(res []any) ([]Item, bool, int64, error) {
	bad := func() ([]Item, bool, int64, error) {
		return nil, false, 0, errors.New("malformed notifications page")
	}
	if len(res) < 2 {
		return bad()
	}
	markStr, _ := res[0].(string)
	mark, _ := strconv.ParseInt(markStr, 10, 64)
	more, _ := res[1].(int64)
	items := make([]Item, 0, len(res)-2)
	for _, r := range res[2:] {
		f, ok := r.([]any)
		if !ok || len(f) != 5 {
			return bad()
		}
		name, _ := f[0].(string)
		msStr, _ := f[1].(string)
		count, _ := f[2].(int64)
		obj, _ := f[3].(string)
		ms, err := strconv.ParseInt(msStr, 10, 64)
		if err != nil {
			return bad()
		}
		it := Item{Name: name, Ms: ms, Count: count, Object: obj, Read: ms <= mark}
		kind, rest, _ := strings.Cut(name, "|")
		k, _ := strconv.Atoi(kind)
		it.Kind = tidingsv1.NotificationKind(k)
		if i := strings.LastIndexByte(rest, '|'); i >= 0 {
			rest = rest[:i]
			if j := strings.LastIndexByte(rest, '|'); j >= 0 {
				it.Target = rest[:j]
			}
		}
		actors, _ := f[4].([]any)
		for _, a := range actors {
			if str, ok := a.(string); ok {
				it.Actors = append(it.Actors, str)
			}
		}
		items = append(items, it)
	}
	return items, more == 1, mark, nil
}

// Newest returns the time of a user's newest item (0 when none) and their
// newest read mark, in one round trip.
func (s *Store) Newest(ctx context.Context, user string) (newest, mark int64, err error) {
	var top, marks *redis.ZSliceCmd
	_, err = s.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		top = pipe.ZRevRangeWithScores(ctx, s.indexKey(user), 0, 0)
		marks = pipe.ZRevRangeWithScores(ctx, s.markKey(user), 0, 0)
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("read notifications of %s: %w", user, err)
	}
	if z := top.Val(); len(z) > 0 {
		newest = int64(z[0].Score)
	}
	if z := marks.Val(); len(z) > 0 {
		mark = int64(z[0].Score)
	}
	return newest, mark, nil
}

// Wipe deletes every notification and mark, before a rebuild.
func (s *Store) Wipe(ctx context.Context) error {
	for _, p := range []string{"nidx:*", "nmem:*", "nobj:*", "nmark:*"} {
		if _, err := redisx.DeleteMatching(ctx, s.rdb, s.ks.Key(p)); err != nil {
			return err
		}
	}
	return nil
}
