package bench

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"

	"github.com/tidingshq/tidings/pkg/activitystore"
	"github.com/tidingshq/tidings/pkg/entity"
	"github.com/tidingshq/tidings/pkg/hot"
	"github.com/tidingshq/tidings/pkg/profilestore"
	"github.com/tidingshq/tidings/pkg/projection"
	"github.com/tidingshq/tidings/pkg/recordstore"
	"github.com/tidingshq/tidings/pkg/redisx"
	"github.com/tidingshq/tidings/pkg/timelinestore"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

// Ceiling is Redis's own rate for timeline inserts on the target's Redis,
// measured right after the fan-out it is compared with: redis-benchmark
// doing pipelined ZADDs to random sorted sets as full as the fan-out's
// timelines were on average, redis-benchmark driving Tidings' own insert
// on packed timelines as full, and a naive Go loop doing one ZADD round
// trip at a time (what a fan-out with a round trip per follower would get).
type Ceiling struct {
	ZaddPerSec  float64 `json:"redis_benchmark_zadd_per_sec"`
	NaivePerSec float64 `json:"naive_zadd_per_sec"`
	Command     string  `json:"redis_benchmark_command"`
	// InsertPerSec is redis-benchmark driving Tidings' own timeline insert
	// (the script of pkg/timelinestore, one new id per call) on packed
	// timelines as full as the sets: what Redis itself allows the fan-out.
	InsertPerSec  float64 `json:"redis_benchmark_insert_script_per_sec"`
	InsertCommand string  `json:"redis_benchmark_insert_command"`
	Keys          int     `json:"keys"`
	// Fill is the average entries per set while redis-benchmark ran.
	Fill int `json:"avg_entries_per_set"`
}

// The ceiling's shape: 10,000 sets, 400,000 pipelined ZADDs from 50
// connections, 16 at a time each.
const (
	ceilingKeys     = 10000
	ceilingOps      = 400000
	ceilingClients  = 50
	ceilingPipeline = 16
	naiveDuration   = 2 * time.Second
	benchKeyPrefix  = redisx.Prefix + "bench:"
)

// findRedisBenchmark finds redis-benchmark (Debian's redis-tools, which
// `make deps` installs).
func findRedisBenchmark() (string, error) {
	p, err := exec.LookPath("redis-benchmark")
	if err != nil {
		return "", errors.New("redis-benchmark not found: run `make deps`, which installs it (Debian's redis-tools)")
	}
	return p, nil
}

// measureCeiling prefills sorted sets so that, during the run, they hold
// fill entries on average, runs the naive loop and then redis-benchmark's
// ZADDs; then prefills packed timelines as full and runs redis-benchmark
// with Tidings' insert; and removes what it wrote.
func measureCeiling(ctx context.Context, rdb redis.UniversalClient, addr string, fill int) (Ceiling, error) {
	bin, err := findRedisBenchmark()
	if err != nil {
		return Ceiling{}, err
	}
	defer func() { _, _ = redisx.DeleteMatching(context.WithoutCancel(ctx), rdb, benchKeyPrefix+"*") }()
	key := func(i int) string { return fmt.Sprintf("%stl:{%012d}", benchKeyPrefix, i) }
	grow := ceilingOps / ceilingKeys
	prefill := max(0, fill-grow/2)
	rng := rand.New(rand.NewPCG(1, 2))
	if err := fillKeys(ctx, rdb, prefill, func(p redis.Pipeliner, i int) {
		zs := make([]redis.Z, prefill)
		for j := range zs {
			zs[j] = redis.Z{Score: float64(rng.IntN(ceilingKeys)), Member: fmt.Sprintf("%012d", rng.IntN(1<<40))}
		}
		p.ZAdd(ctx, key(i), zs...)
	}); err != nil {
		return Ceiling{}, fmt.Errorf("prefill ceiling sets: %w", err)
	}
	c := Ceiling{Keys: ceilingKeys, Fill: prefill + grow/2}

	// The naive loop: one round trip per insert.
	deadline := time.Now().Add(naiveDuration)
	start, n := time.Now(), 0
	for time.Now().Before(deadline) {
		if err := rdb.ZAdd(ctx, key(rng.IntN(ceilingKeys)), redis.Z{Score: float64(n), Member: fmt.Sprintf("%012d", rng.IntN(1<<40))}).Err(); err != nil {
			return Ceiling{}, fmt.Errorf("naive zadd: %w", err)
		}
		n++
	}
	c.NaivePerSec = float64(n) / time.Since(start).Seconds()

	host, port, _ := strings.Cut(addr, ":")
	run := func(command ...string) (float64, string, error) {
		args := append([]string{"-h", host, "-p", port,
			"-c", strconv.Itoa(ceilingClients), "-P", strconv.Itoa(ceilingPipeline),
			"-n", strconv.Itoa(ceilingOps), "-r", strconv.Itoa(ceilingKeys), "--csv"}, command...)
		line := "redis-benchmark " + strings.Join(args, " ")
		var out, errOut bytes.Buffer
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Stdout, cmd.Stderr = &out, &errOut
		if err := cmd.Run(); err != nil {
			return 0, line, fmt.Errorf("redis-benchmark: %w: %s", err, strings.TrimSpace(errOut.String()))
		}
		rate, err := parseBenchmarkCSV(out.String())
		return rate, line, err
	}
	if c.ZaddPerSec, c.Command, err = run("ZADD", benchKeyPrefix+"tl:{__rand_int__}", "__rand_int__", "__rand_int__"); err != nil {
		return Ceiling{}, err
	}

	// The same on packed timelines with Tidings' insert. redis-benchmark
	// can only pass random decimal numbers, so the script starts by making
	// the 8-byte id the fan-out would pass: newer than every entry (the
	// server's clock in microseconds), the random number in its low bytes.
	sha, err := rdb.ScriptLoad(ctx, `local t = redis.call('TIME')
ARGV[3] = struct.pack('>I6I2', tonumber(t[1]) * 1000000 + tonumber(t[2]), tonumber(ARGV[3]) % 65536)
`+timelinestore.InsertSource).Result()
	if err != nil {
		return Ceiling{}, fmt.Errorf("load insert script: %w", err)
	}
	home := func(i int) string { return fmt.Sprintf("%shome:{%012d}", benchKeyPrefix, i) }
	older := uint64(time.Now().Add(-time.Hour).UnixMicro()) << 16
	if err := fillKeys(ctx, rdb, prefill, func(p redis.Pipeliner, i int) {
		entries := make([]uint64, prefill)
		for j := range entries {
			entries[j] = older - rng.Uint64N(1<<40)
		}
		slices.SortFunc(entries, func(a, b uint64) int { return cmp.Compare(b, a) })
		packed := make([]byte, 0, 8*prefill)
		for _, e := range entries {
			packed = binary.BigEndian.AppendUint64(packed, e)
		}
		p.Set(ctx, home(i), packed, 0)
	}); err != nil {
		return Ceiling{}, fmt.Errorf("prefill ceiling timelines: %w", err)
	}
	// redis-benchmark counts error replies as requests: make sure the
	// script inserts before timing it.
	probe := []string{benchKeyPrefix + "home:{probe}", benchKeyPrefix + "seen:{probe}", benchKeyPrefix + "hsrc:{probe}"}
	if added, err := rdb.EvalSha(ctx, sha, probe, projection.DefaultConfig().HomeCap, 0, "000000001234").Int(); err != nil || added != 1 {
		return Ceiling{}, fmt.Errorf("insert script: added %d, %w", added, err)
	}
	if c.InsertPerSec, c.InsertCommand, err = run("EVALSHA", sha, "3",
		benchKeyPrefix+"home:{__rand_int__}", benchKeyPrefix+"seen:{__rand_int__}", benchKeyPrefix+"hsrc:{__rand_int__}",
		strconv.Itoa(projection.DefaultConfig().HomeCap), "0", "__rand_int__"); err != nil {
		return Ceiling{}, err
	}
	return c, nil
}

// fillKeys calls fill for each of the ceiling's keys, 500 keys to a
// pipeline, when there are entries to prefill.
func fillKeys(ctx context.Context, rdb redis.UniversalClient, entries int, fill func(p redis.Pipeliner, i int)) error {
	for lo := 0; lo < ceilingKeys && entries > 0; lo += 500 {
		if _, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i := lo; i < min(lo+500, ceilingKeys); i++ {
				fill(p, i)
			}
			return nil
		}); err != nil {
			return err
		}
	}
	return nil
}

// parseBenchmarkCSV reads the requests per second from redis-benchmark's
// --csv output: a header line, then "test","rps",...
func parseBenchmarkCSV(out string) (float64, error) {
	for line := range strings.Lines(out) {
		fields := strings.Split(strings.TrimSpace(line), ",")
		if len(fields) < 2 || fields[0] == `"test"` {
			continue
		}
		if v, err := strconv.ParseFloat(strings.Trim(fields[1], `"`), 64); err == nil {
			return v, nil
		}
	}
	return 0, fmt.Errorf("no rate in redis-benchmark output: %q", out)
}

// Memory is what the timelines cost in Redis and what the processes held.
type Memory struct {
	// BytesPerEntry is MEMORY USAGE over the entries of a sample of home
	// timelines: key, value and allocator overhead included.
	BytesPerEntry      float64 `json:"redis_bytes_per_timeline_entry"`
	SampledTimelines   int     `json:"sampled_timelines"`
	EntriesPerTimeline float64 `json:"avg_entries_per_timeline"`
	// The largest resident set sizes seen while the bench drove load.
	StackRSSMiB float64 `json:"stack_rss_max_mib"`
	RedisRSSMiB float64 `json:"redis_rss_max_mib"`
}

// sampleTimelines measures up to limit home timelines: their MEMORY USAGE
// and their entries.
func sampleTimelines(ctx context.Context, rdb redis.UniversalClient, limit int) (Memory, error) {
	var keys []string
	err := redisx.ScanKeys(ctx, rdb, redisx.Prefix+"home:*", 1000, func(batch []string) error {
		keys = append(keys, batch...)
		if len(keys) >= limit {
			return errStopScan
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStopScan) {
		return Memory{}, fmt.Errorf("scan timelines: %w", err)
	}
	keys = keys[:min(len(keys), limit)]
	if len(keys) == 0 {
		return Memory{}, errors.New("no home timelines to measure")
	}
	usage := make([]*redis.IntCmd, len(keys))
	lens := make([]*redis.IntCmd, len(keys))
	if _, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range keys {
			usage[i] = p.MemoryUsage(ctx, k, 0)
			lens[i] = p.StrLen(ctx, k)
		}
		return nil
	}); err != nil {
		return Memory{}, fmt.Errorf("measure timelines: %w", err)
	}
	var bytes, entries int64
	for i := range keys {
		bytes += usage[i].Val()
		entries += lens[i].Val() / 8
	}
	if entries == 0 {
		return Memory{}, errors.New("sampled home timelines are empty")
	}
	return Memory{
		BytesPerEntry:      float64(bytes) / float64(entries),
		SampledTimelines:   len(keys),
		EntriesPerTimeline: float64(entries) / float64(len(keys)),
	}, nil
}

var errStopScan = errors.New("enough keys")

// redisRSS is the Redis server's resident set size in bytes.
func redisRSS(ctx context.Context, rdb redis.UniversalClient) (float64, error) {
	info, err := rdb.Info(ctx, "memory").Result()
	if err != nil {
		return 0, fmt.Errorf("redis info: %w", err)
	}
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "used_memory_rss:"); ok {
			return strconv.ParseFloat(v, 64)
		}
	}
	return 0, errors.New("redis info has no used_memory_rss")
}

// keys names the keys of the stacks the bench starts: their projections'
// first generation (only the stores' key methods are used; they hold no
// client).
var keys = projection.NewStores(nil, redisx.NewKeyspace(0), hot.Thresholds{})

// rawHomeRead does the Redis reads of a 50-item home timeline read from a
// plain client: the ids, then the bodies, then the authors' profiles and
// the records, each in one pipeline. It is the baseline of the read figure,
// and returns how many items it read.
func rawHomeRead(ctx context.Context, rdb redis.UniversalClient, user string) (int, error) {
	data, err := rdb.GetRange(ctx, keys.Timelines.HomeKey(user), 0, 50*8-1).Bytes()
	if err != nil {
		return 0, fmt.Errorf("raw read ids: %w", err)
	}
	list := timelinestore.Decode(data)
	bodies := make([]*redis.StringCmd, len(list))
	if _, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range list {
			bodies[i] = p.HGet(ctx, keys.Bodies.BodyKey(id.String()), activitystore.BodyField)
		}
		return nil
	}); err != nil && !errors.Is(err, redis.Nil) {
		return 0, fmt.Errorf("raw read bodies: %w", err)
	}
	users := map[string]bool{}
	records := map[string]bool{}
	for _, b := range bodies {
		raw, err := b.Bytes()
		if err != nil {
			continue
		}
		a := &tidingsv1.Activity{}
		if err := proto.Unmarshal(raw, a); err != nil {
			return 0, fmt.Errorf("raw read: decode body: %w", err)
		}
		if u := entity.ActorUser(a); u != "" {
			users[keys.Profiles.Key(u)] = true
		}
		if r := a.GetRecord(); r != nil {
			records[keys.Records.Key(r)] = true
		}
	}
	if _, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for k := range users {
			p.HGet(ctx, k, profilestore.Field)
		}
		for k := range records {
			p.HGet(ctx, k, recordstore.Field)
		}
		return nil
	}); err != nil && !errors.Is(err, redis.Nil) {
		return 0, fmt.Errorf("raw read profiles and records: %w", err)
	}
	return len(list), nil
}
