package projection

import (
	"context"
	"fmt"
	"strconv"

	"github.com/tidingshq/tidings/pkg/redisx"
)

// Watermarks say, in Redis, how far into each stream the projections are
// known to hold the log: every event up to a stream's watermark has been
// applied. The worker sets them from what its consumers have acknowledged
// (an event is acknowledged only once applied), so a watermark is a floor,
// whatever order replicas applied events in.
//
// They are kept once per Redis shard (redisx.ShardTags), each in the
// shard it speaks for: a Redis, or one primary of a cluster, that comes
// back from an older snapshot comes back with the older watermark of the
// data it holds. The worker notices that a watermark went backwards (or
// vanished) and re-applies the log from it (pkg/heal).

// WatermarkStreams are the streams whose events the watermarks follow:
// those a replay reads (FANOUT chunks are written again when their
// activities are replayed).
func WatermarkStreams() []string { return ReplayStreams() }

// watermarkKey is the watermark hash of one shard: a field per stream.
func (p *Projector) watermarkKey(tag string) string {
	return p.st.Keyspace.Key("applied:{" + tag + "}")
}

// advanceWatermark moves the watermarks of one shard forward, unless one
// of them is behind what the caller last saw there (Redis lost writes):
// then it writes nothing and returns 1.
//
// KEYS[1] the shard's watermark hash; ARGV: triples of stream, the value
// last seen, the new value.
var advanceWatermark = redisx.NewScript(`
for i = 1, #ARGV, 3 do
  local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '0')
  if cur < tonumber(ARGV[i+1]) then return 1 end
end
for i = 1, #ARGV, 3 do
  local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '0')
  if tonumber(ARGV[i+2]) > cur then redis.call('HSET', KEYS[1], ARGV[i], ARGV[i+2]) end
end
return 0
`)

// Watermarks returns how far the projections hold each stream: the lowest
// watermark of any shard. complete is false when a shard holds no
// watermark at all (a Redis emptied, or never watermarked).
func (p *Projector) Watermarks(ctx context.Context) (pos Positions, complete bool, err error) {
	tags, err := redisx.ShardTags(ctx, p.st.Timelines.Client())
	if err != nil {
		return nil, false, err
	}
	pos, complete = Positions{}, true
	for i, tag := range tags {
		m, err := p.st.Timelines.Client().HGetAll(ctx, p.watermarkKey(tag)).Result()
		if err != nil {
			return nil, false, fmt.Errorf("read watermarks: %w", err)
		}
		if len(m) == 0 {
			complete = false
		}
		for _, s := range WatermarkStreams() {
			v, _ := strconv.ParseUint(m[s], 10, 64)
			if i == 0 || v < pos[s] {
				pos[s] = v
			}
		}
	}
	return pos, complete, nil
}

// AdvanceWatermarks raises the watermarks of every shard to to, unless a
// shard's watermark of some stream is below what seen says it was (the
// watermarks this process wrote last): then Redis went back in time, and
// it returns false and writes nothing to that shard.
func (p *Projector) AdvanceWatermarks(ctx context.Context, seen, to Positions) (bool, error) {
	rdb := p.st.Timelines.Client()
	tags, err := redisx.ShardTags(ctx, rdb)
	if err != nil {
		return false, err
	}
	args := make([]any, 0, 3*len(to))
	for _, s := range WatermarkStreams() {
		args = append(args, s, seen[s], to[s])
	}
	ok := true
	for _, tag := range tags {
		lost, err := advanceWatermark.Run(ctx, rdb, []string{p.watermarkKey(tag)}, args...).Int()
		if err != nil {
			return false, fmt.Errorf("advance watermarks: %w", err)
		}
		ok = ok && lost == 0
	}
	return ok, nil
}

// wipeWatermarks deletes the watermarks of the Projector's generation.
func (p *Projector) wipeWatermarks(ctx context.Context) error {
	rdb := p.st.Timelines.Client()
	tags, err := redisx.ShardTags(ctx, rdb)
	if err != nil {
		return err
	}
	for _, tag := range tags {
		if err := rdb.Del(ctx, p.watermarkKey(tag)).Err(); err != nil {
			return fmt.Errorf("wipe watermarks: %w", err)
		}
	}
	return nil
}
