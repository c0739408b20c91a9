package bench

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Report is everything one run measured.
type Report struct {
	Mode      Mode      `json:"mode"`
	StartedAt time.Time `json:"started_at"`
	Seconds   float64   `json:"seconds"`
	Machine   Machine   `json:"machine"`
	Target    string    `json:"target"`
	JetStream string    `json:"jetstream"`
	// Fanout holds the main run first, then the fsync-always run, then
	// the other growth sizes.
	Fanout      []FanoutRun  `json:"fanout"`
	Latency     *Latency     `json:"latency,omitempty"`
	Reads       *Reads       `json:"reads,omitempty"`
	Memory      *Memory      `json:"memory,omitempty"`
	Growth      []Growth     `json:"growth,omitempty"`
	BigAudience *BigAudience `json:"big_audience,omitempty"`
	Pulled      *Pulled      `json:"pulled_reads,omitempty"`
	// Conversations are the comment, reaction and notification figures.
	Conversations *Conversations `json:"conversations,omitempty"`
	Targets       []Check        `json:"targets"`
}

// Machine describes where the run ran.
type Machine struct {
	OS      string  `json:"os"`
	CPUs    int     `json:"cpus"`
	CPU     string  `json:"cpu"`
	MemGiB  float64 `json:"mem_gib"`
	Go      string  `json:"go"`
	Redis   string  `json:"redis"`
	Nats    string  `json:"nats_server"`
	Sharing string  `json:"sharing"`
}

// Growth is the fan-out and read figures at one organisation size.
type Growth struct {
	Users            int     `json:"users"`
	Edges            int     `json:"follow_edges"`
	DeliveriesPerSec float64 `json:"deliveries_per_sec"`
	ReadsPerSec      float64 `json:"saturated_reads_per_sec"`
	ReadP99          float64 `json:"read_p99_ms_at_half_load"`
}

func growthRow(f FanoutRun, r Reads) Growth {
	return Growth{Users: f.Users, Edges: f.Edges, DeliveriesPerSec: f.DeliveriesPerSec,
		ReadsPerSec: r.SaturatedPerSec, ReadP99: r.HalfLoad.P99}
}

// Check is one target of the issue that set them, and whether it was met.
type Check struct {
	Name string `json:"name"`
	Want string `json:"target"`
	Got  string `json:"measured"`
	Met  bool   `json:"met"`
}

func newReport(opts Options) *Report {
	r := &Report{Mode: opts.Mode, StartedAt: time.Now().UTC(), Machine: machine(), Target: "stacks the bench starts (tidings dev: services, worker and NATS in one process; redis-server beside it)"}
	if opts.Target != nil {
		r.Target = opts.Target.GRPCAddr
	}
	return r
}

func natsVersion() string { return server.VERSION }

func machine() Machine {
	m := Machine{
		OS: runtime.GOOS + "/" + runtime.GOARCH, CPUs: runtime.NumCPU(), Go: runtime.Version(), Nats: natsVersion(),
		Sharing: "load generator, stack and Redis share the machine",
	}
	m.CPU = procField("/proc/cpuinfo", "model name")
	if kb, err := strconv.ParseFloat(strings.Fields(procField("/proc/meminfo", "MemTotal") + " 0")[0], 64); err == nil {
		m.MemGiB = float64(int(kb/(1<<20)*10)) / 10
	}
	if out, err := readCommand("redis-server", "--version"); err == nil {
		for _, f := range strings.Fields(out) {
			if v, ok := strings.CutPrefix(f, "v="); ok {
				m.Redis = v
			}
		}
	}
	return m
}

func readCommand(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).Output()
	return string(out), err
}

// procField returns the value of the first "name: value" line of a /proc
// file.
func procField(path, name string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == name {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// evaluate checks the figures against the targets of the benchmark issues
// (the latest, issue 18, where they differ).
func (r *Report) evaluate() {
	add := func(name, want, got string, met bool) {
		r.Targets = append(r.Targets, Check{Name: name, Want: want, Got: got, Met: met})
	}
	for _, f := range r.Fanout {
		if f.Ceiling.ZaddPerSec == 0 {
			continue // a growth run, without its own ceiling
		}
		what := "worker drain"
		if f.Method != "drain" {
			what = "fan-out burst (posting and fan-out together)"
		}
		if f.Fsync == "default" || f.Fsync == "target's" {
			add(what+" vs redis-benchmark ZADD", "≥ 0.60×", fmt.Sprintf("%.2f× (%s of %s)", f.RatioToCeiling, rate(f.DeliveriesPerSec), rate(f.Ceiling.ZaddPerSec)), f.RatioToCeiling >= 0.6)
			add(what+" vs naive loop", "≥ 3×", fmt.Sprintf("%.1f×", f.RatioToNaive), f.RatioToNaive >= 3)
		}
		if f.Publish == nil {
			continue
		}
		want := 0.1
		if f.Fsync == "always" {
			want = 0.5
		}
		add(fmt.Sprintf("posting vs JetStream async publish (fsync %s)", f.Fsync), fmt.Sprintf("≥ %.2f×", want),
			fmt.Sprintf("%.3f× (%s of %s)", f.RatioPostsToPublish, rate(f.PostsPerSec), rate(f.Publish.PerSec)), f.RatioPostsToPublish >= want)
	}
	if l := r.Latency; l != nil {
		add("publish → readable p99", "≤ 100 ms", fmt.Sprintf("%.1f ms at %s deliveries", l.Readable.P99, rate(l.Rate)), l.Readable.P99 <= 100)
		add("publish → readable p95", "≤ 50 ms", fmt.Sprintf("%.1f ms at %s deliveries", l.Readable.P95, rate(l.Rate)), l.Readable.P95 <= 50)
	}
	if rd := r.Reads; rd != nil {
		add("reads vs raw Redis", "≥ 0.60×", fmt.Sprintf("%.2f× (%s of %s)", rd.Ratio, rate(rd.SaturatedPerSec), rate(rd.RawPerSec)), rd.Ratio >= 0.6)
		add("read p99 at half saturation", "≤ 10 ms", fmt.Sprintf("%.2f ms", rd.HalfLoad.P99), rd.HalfLoad.P99 <= 10)
	}
	if p := r.Pulled; p != nil {
		add(fmt.Sprintf("home read following %d pulled vs %d pushed", p.Entities, p.Entities), "≥ 0.30×", fmt.Sprintf("%.2f× (%s of %s)", p.Ratio, rate(p.PulledPerSec), rate(p.PushedPerSec)), p.Ratio >= 0.3)
	}
	if m := r.Memory; m != nil {
		add("Redis bytes per timeline entry", "≤ 12", fmt.Sprintf("%.1f", m.BytesPerEntry), m.BytesPerEntry <= 12)
	}
	if cv := r.Conversations; cv != nil {
		add("home read with conversation fields vs without", "≤ 1.3 × the cost", fmt.Sprintf("%.2f ×", cv.CostRatio), cv.CostRatio <= 1.3)
		add("reaction counts on one hot post", "exact", cv.CountsRead, cv.CountsExact)
		add("participants notified of a comment", "all", fmt.Sprintf("%d of %d", cv.NotifiedVerified, cv.NotifiedExpected), cv.NotifiedVerified == cv.NotifiedExpected)
	}
	if len(r.Growth) >= 2 {
		lo, hi := r.Growth[0], r.Growth[len(r.Growth)-1]
		ratio := hi.DeliveriesPerSec / lo.DeliveriesPerSec
		add(fmt.Sprintf("drain rate at %s vs %s users", count(hi.Users), count(lo.Users)), "≥ 0.80×", fmt.Sprintf("%.2f×", ratio), ratio >= 0.8)
		reads := hi.ReadsPerSec / lo.ReadsPerSec
		add(fmt.Sprintf("read rate at %s vs %s users", count(hi.Users), count(lo.Users)), "≥ 0.80×", fmt.Sprintf("%.2f×", reads), reads >= 0.8)
	}
}

// count formats n with thousands separators.
func count(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

func rate(v float64) string { return count(int(v+0.5)) + "/s" }

// WriteTable prints the report for people.
func (r *Report) WriteTable(out io.Writer) error {
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	m := r.Machine
	p("Tidings bench (%s), %s, %.0fs", r.Mode, r.StartedAt.Format(time.RFC3339), r.Seconds)
	p("machine\t%s, %d CPUs (%s), %.1f GiB; %s; redis %s", m.OS, m.CPUs, m.CPU, m.MemGiB, m.Go, m.Redis)
	p("target\t%s; %s", r.Target, m.Sharing)
	p("jetstream\t%s", r.JetStream)
	p("")
	p("FAN-OUT\tusers\tedges\thot\tfsync\tposts\tmethod\tdeliveries/s\tceiling (redis-benchmark ZADD)\tratio\tnaive loop\tratio\tTidings' insert (redis-benchmark)\tratio\tverified")
	for _, f := range r.Fanout {
		p("\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s at %d entries/set\t%.2f×\t%s\t%.1f×\t%s\t%.2f×\t%d posts",
			count(f.Users), count(f.Edges), f.HotEntities, f.Fsync, count(f.Posts), f.Method, rate(f.DeliveriesPerSec),
			rate(f.Ceiling.ZaddPerSec), f.Ceiling.Fill, f.RatioToCeiling, rate(f.Ceiling.NaivePerSec), f.RatioToNaive,
			rate(f.Ceiling.InsertPerSec), f.RatioToInsert, f.Verified)
	}
	p("\t(drain: the posts went in with the fan-out consumer paused, then the worker was timed from its resumption until lag 0; burst: posting and fan-out together)")
	p("")
	p("POSTING\tusers\tfsync\tposts/s (32 callers)\tJetStream async publish, same event size\tevent bytes\tratio")
	for _, f := range r.Fanout {
		if f.Publish == nil {
			continue
		}
		p("\t%s\t%s\t%s\t%s\t%d\t%.3f×", count(f.Users), f.Fsync, rate(f.PostsPerSec), rate(f.Publish.PerSec), f.Publish.EventBytes, f.RatioPostsToPublish)
	}
	if len(r.Fanout) > 0 {
		p("\tceiling: %s", r.Fanout[0].Ceiling.Command)
		p("\tinsert:  %s", r.Fanout[0].Ceiling.InsertCommand)
		p("\t         (Tidings' insert script, made to take redis-benchmark's random numbers as new 8-byte ids)")
	}
	if l := r.Latency; l != nil {
		p("")
		p("PUBLISH → VISIBLE\tbackground\tp50\tp95\tp99\tmax\tprobes")
		p("  readable by every follower\t%s\t%.1f ms\t%.1f ms\t%.1f ms\t%.1f ms\t%d × %d followers, polled at %s",
			rate(l.Rate), l.Readable.P50, l.Readable.P95, l.Readable.P99, l.Readable.Max, l.Readable.Count, l.Followers, l.PollEvery)
		p("  delivered by every Watch\t%s\t%.1f ms\t%.1f ms\t%.1f ms\t%.1f ms\t%d", rate(l.Rate), l.Watch.P50, l.Watch.P95, l.Watch.P99, l.Watch.Max, l.Watch.Count)
		if l.Reduced != "" {
			p("  background below %s deliveries/s: %s", count(DefaultBackgroundRate), l.Reduced)
		}
	}
	if rd := r.Reads; rd != nil {
		p("")
		p("READS (home, 50 hydrated)\tsaturated\traw Redis\tratio\thalf load\tp50\tp99\titems a read (raw)\treaders")
		p("\t%s\t%s\t%.2f×\t%s\t%.2f ms\t%.2f ms\t%.1f (%.1f)\t%d", rate(rd.SaturatedPerSec), rate(rd.RawPerSec), rd.Ratio, rate(rd.HalfLoadPerSec), rd.HalfLoad.P50, rd.HalfLoad.P99, rd.ItemsPerRead, rd.RawItemsPerRead, rd.Readers)
	}
	if cv := r.Conversations; cv != nil {
		p("")
		p("CONVERSATIONS\tmeasured\tdetail")
		p("  comment → notified (WatchNotifications)\tp50 %.1f ms, p95 %.1f ms, p99 %.1f ms, max %.1f ms\t%d participants, %d watchers × %d comments; built in %.1f s; %d of %d notified of the last",
			cv.Notified.P50, cv.Notified.P95, cv.Notified.P99, cv.Notified.Max, cv.Participants, cv.Watchers, cv.Probes, cv.ThreadBuildSeconds, cv.NotifiedVerified, cv.NotifiedExpected)
		p("  home read, 50 items, with conversations\t%s (without: %s)\tcost %.2f × (median of 5 alternating rounds; of the averages %.2f ×); %.0f%% of items commented on; %d callers",
			rate(cv.FullPerSec), rate(cv.BasicPerSec), cv.CostRatio, cv.BasicPerSec/cv.FullPerSec, 100*cv.ItemsWithComments, cv.ReadCallers)
		p("  home read, latest activity first\t%s\tcost %.2f × latest posts first; %.1f items a read", rate(cv.ActivityPerSec), cv.ActivityCostRatio, cv.ActivityItemsPerRead)
		p("  reactions on one hot post\t%s acknowledged, %s applied\t%d users × %d kinds; counts %s; the author's item names %d actors",
			rate(cv.AckedPerSec), rate(cv.AppliedPerSec), cv.Reactors, len(conversationKinds), cv.CountsRead, cv.FoldedActors)
	}
	if mem := r.Memory; mem != nil {
		p("")
		p("MEMORY\tRedis bytes/entry\tentries/timeline\tsampled\tstack RSS max\tRedis RSS max")
		p("\t%.1f\t%.0f\t%d\t%.0f MiB\t%.0f MiB", mem.BytesPerEntry, mem.EntriesPerTimeline, mem.SampledTimelines, mem.StackRSSMiB, mem.RedisRSSMiB)
	}
	if len(r.Growth) > 0 {
		p("")
		p("GROWTH\tusers\tedges\tdeliveries/s\treads/s\tread p99 (half load)")
		for _, g := range r.Growth {
			p("\t%s\t%s\t%s\t%s\t%.2f ms", count(g.Users), count(g.Edges), rate(g.DeliveriesPerSec), rate(g.ReadsPerSec), g.ReadP99)
		}
	}
	if pr := r.Pulled; pr != nil {
		p("")
		p("PULLED READS (home, 50 hydrated)\tentities followed\tother hot entities\tpulled reads/s\tpushed reads/s\tratio")
		p("\t%d\t%d\t%s\t%s\t%.2f×", pr.Entities, pr.Others, rate(pr.PulledPerSec), rate(pr.PushedPerSec), pr.Ratio)
	}
	if b := r.BigAudience; b != nil {
		p("")
		p("BIG AUDIENCE\tfollowers\tin every timeline after\tdeliveries/s")
		p("\t%s\t%.2f s\t%s", count(b.Followers), b.Seconds, rate(b.DeliveriesPerSec))
	}
	p("")
	p("TARGETS\ttarget\tmeasured\t")
	for _, c := range r.Targets {
		verdict := "met"
		if !c.Met {
			verdict = "MISSED"
		}
		p("  %s\t%s\t%s\t%s", c.Name, c.Want, c.Got, verdict)
	}
	return w.Flush()
}
