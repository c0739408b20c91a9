package web_test

import (
	"context"
	"encoding/json"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tidingshq/tidings/pkg/auth"
	"github.com/tidingshq/tidings/pkg/config"
	"github.com/tidingshq/tidings/pkg/entity"
	"github.com/tidingshq/tidings/pkg/testenv"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
	"github.com/tidingshq/tidings/services/stack"
)

// The browser tests drive Debian's Chromium (deploy/scripts/ensure-chromium.sh)
// through the web page of a whole stack, as employees use it, and run
// axe-core (deploy/scripts/ensure-axe.sh) in every page. `make test` runs
// `make deps`, which installs both.
const (
	chromiumPath = "/usr/bin/chromium"
	axeVersion   = "4.14.1"
)

// repoRoot is where .cache/ lives.
func repoRoot(t *testing.T) string {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	require.NoError(t, err)
	return filepath.Dir(strings.TrimSpace(string(out)))
}

// site is a running stack with the web role.
type site struct {
	url   string
	grpc  string
	token func(auth.Identity) string
}

func startSite(t *testing.T) *site {
	t.Helper()
	ns, rs := testenv.NATS(t), testenv.Redis(t)
	cfg := config.Default()
	cfg.NATSURL, cfg.RedisAddrs = ns.ClientURL(), []string{rs.Addr()}
	cfg.GRPCAddr, cfg.HTTPAddr, cfg.DebugAddr = "127.0.0.1:0", "127.0.0.1:0", ""
	cfg.AuthSecret = string(testenv.TokenConfig.Secret)
	cfg.AuthIssuer, cfg.AuthAudience = testenv.TokenConfig.Issuer, testenv.TokenConfig.Audience
	mint := func(id auth.Identity) (string, error) {
		return auth.Mint(testenv.TokenConfig, id, time.Hour, time.Now())
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	ready := make(chan stack.Addrs, 1)
	done := make(chan error, 1)
	go func() {
		done <- stack.Run(ctx, stack.Options{Config: cfg, Roles: stack.AllRoles(), Logger: testenv.Logger(),
			OnReady:   func(a stack.Addrs) { ready <- a },
			DevTokens: func(k auth.Kind, id string) (string, error) { return mint(auth.Identity{Kind: k, ID: id}) },
		})
	}()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	var a stack.Addrs
	select {
	case a = <-ready:
	case err := <-done:
		t.Fatalf("stack did not start: %v", err)
	}
	return &site{url: "http://" + a.HTTP, grpc: a.GRPC, token: func(id auth.Identity) string {
		tok, err := mint(id)
		require.NoError(t, err)
		return tok
	}}
}

func (s *site) conn(t *testing.T, id auth.Identity) *grpc.ClientConn {
	conn, err := grpc.NewClient(s.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(auth.PerRPCToken(s.token(id))))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// hostile is HTML and script in every text field the page shows.
const hostile = `<script>window.__pwned=1</script><img src=x onerror="window.__pwned=1"><b>bold</b>`

// seed makes the directory, records and a hostile post through the API.
func (s *site) seed(t *testing.T) {
	ctx := t.Context()
	root := s.conn(t, testenv.Admin)
	_, err := tidingsv1.NewProfileServiceClient(root).BatchUpsertProfiles(ctx, &tidingsv1.BatchUpsertProfilesRequest{Profiles: []*tidingsv1.Profile{
		{UserId: "ana", DisplayName: "Ana Lima", Title: "Account Executive", Department: "Sales"},
		{UserId: "bo", DisplayName: "Bo Chen", Title: "Sales Engineer", Department: "Sales"},
		{UserId: "cy", DisplayName: "Cy Okafor", Title: "Support Lead", Department: "Support"},
		{UserId: "mal", DisplayName: "Mal " + hostile, Title: hostile, Department: "Red team", Location: hostile},
	}})
	require.NoError(t, err)
	_, err = tidingsv1.NewProfileServiceClient(root).UpdateAboutMe(ctx, &tidingsv1.UpdateAboutMeRequest{UserId: "mal", AboutMe: hostile + ` <a href="javascript:window.__pwned=1">click</a>`})
	require.NoError(t, err)
	crm := tidingsv1.NewRecordServiceClient(s.conn(t, testenv.App("crm")))
	acme := &tidingsv1.Record{
		Ref: &tidingsv1.RecordRef{Type: "crm.opportunity", ExternalId: "ACME/1"}, Title: "Acme " + hostile, OwnerId: "ana",
		Url: "javascript:window.__pwned=1", Attributes: map[string]string{"Stage": hostile},
	}
	_, err = crm.UpsertRecord(ctx, &tidingsv1.UpsertRecordRequest{Record: acme})
	testenv.RequireCode(t, err, codes.InvalidArgument) // the API refuses script URLs; the page escapes the rest
	acme.Url = "https://crm.example.com/opp/ACME-1?" + url.QueryEscape(hostile)
	_, err = crm.UpsertRecord(ctx, &tidingsv1.UpsertRecordRequest{Record: acme})
	require.NoError(t, err)
	support := tidingsv1.NewRecordServiceClient(s.conn(t, testenv.App("support")))
	_, err = support.UpsertRecord(ctx, &tidingsv1.UpsertRecordRequest{Record: &tidingsv1.Record{
		Ref: &tidingsv1.RecordRef{Type: "support.incident", ExternalId: "INC-7"}, Title: "Secret incident INC-7", OwnerId: "cy",
		Visibility: tidingsv1.Visibility_VISIBILITY_RESTRICTED, ReaderIds: []string{"cy"},
	}})
	require.NoError(t, err)
	follows := tidingsv1.NewFollowServiceClient(root)
	for _, f := range [][2]string{{"bo", "ana"}, {"bo", "mal"}, {"cy", "ana"}} {
		_, err = follows.Follow(ctx, &tidingsv1.FollowRequest{UserId: f[0], Entity: entity.User(f[1])})
		require.NoError(t, err)
	}
	mal := tidingsv1.NewActivityServiceClient(s.conn(t, testenv.Employee("mal")))
	_, err = mal.PostActivity(ctx, &tidingsv1.PostActivityRequest{
		ActorUserId: "mal", Text: hostile + " javascript:window.__pwned=1 @bo",
		Links: []*tidingsv1.Link{{Url: "javascript:window.__pwned=1", Title: hostile}, {Url: "https://example.com/ok", Title: "a fine link"}},
	})
	testenv.RequireCode(t, err, codes.InvalidArgument) // the API refuses script URLs
	_, err = mal.PostActivity(ctx, &tidingsv1.PostActivityRequest{
		ActorUserId: "mal", Text: hostile + " javascript:window.__pwned=1 @bo",
		Links: []*tidingsv1.Link{{Url: "https://example.com/x?q=" + url.QueryEscape(hostile), Title: hostile}, {Url: "https://example.com/ok", Title: "a fine link"}},
	})
	require.NoError(t, err)
}

// poll waits until js is true, failing after d.
func poll(js string, d time.Duration) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		_, err := chromedp.Poll[bool](js, chromedp.WithPollingTimeout(d))(ctx, t)
		return chromedp.Void{}, err
	}
}

// browser is one employee's browser (its own cookie jar).
type browser struct {
	ctx     context.Context
	dialogs *atomic.Int32
}

func newBrowser(alloc context.Context, t *testing.T) *browser {
	dialogs := &atomic.Int32{}
	ctx, cancel := chromedp.NewContext(alloc, chromedp.WithNewBrowserContext(), chromedp.WithListener(func(ev any) {
		if _, ok := ev.(*page.EventJavascriptDialogOpening); ok {
			dialogs.Add(1)
		}
	}))
	t.Cleanup(cancel)
	require.NoError(t, chromedp.Do(ctx, chromedp.EmulateViewport(1280, 900)))
	return &browser{ctx: ctx, dialogs: dialogs}
}

func (b *browser) do(t *testing.T, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	require.NoError(t, chromedp.Do(ctx, steps...))
}

func eval[T any](t *testing.T, b *browser, js string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js, chromedp.EvalAwaitPromise))
	require.NoError(t, err, js)
	return v
}

// safe fails if anything hostile ran or became a live link.
func (b *browser) safe(t *testing.T) {
	t.Helper()
	require.Equal(t, "undefined", eval[string](t, b, `typeof window.__pwned`), "injected script ran")
	require.Zero(t, b.dialogs.Load(), "a dialog opened")
	require.Zero(t, eval[int](t, b, `document.querySelectorAll('a[href^="javascript:" i], img[src="x"], script:not([src]), b').length`),
		"user HTML became markup")
}

// axe runs axe-core in the page and fails on serious or critical violations.
func (b *browser) axe(t *testing.T, source string) {
	t.Helper()
	eval[bool](t, b, source+";true")
	var problems []string
	raw := eval[string](t, b, `axe.run(document, {resultTypes: ["violations"]}).then(r => JSON.stringify(
		r.violations.filter(v => v.impact === "serious" || v.impact === "critical")
		 .map(v => v.id + " (" + v.impact + "): " + v.help + " at " + v.nodes.map(n => n.target.join(" ")).join(", "))))`)
	require.NoError(t, json.Unmarshal([]byte(raw), &problems))
	require.Empty(t, problems, "accessibility violations on %s", eval[string](t, b, "location.pathname"))
}

// shoot saves the page at phone and desktop widths.
func (b *browser) shoot(t *testing.T, dir, name string) {
	t.Helper()
	for _, vp := range []struct {
		name string
		w, h int64
	}{{"phone", 390, 844}, {"desktop", 1280, 900}} {
		ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
		err := chromedp.Do(ctx, chromedp.EmulateViewport(vp.w, vp.h))
		var png []byte
		if err == nil {
			png, err = chromedp.Run(ctx, chromedp.FullScreenshot(100))
		}
		cancel()
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, name+"-"+vp.name+".png"), png, 0o600))
	}
	b.do(t, chromedp.EmulateViewport(1280, 900))
}

func TestWebPageInChromium(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("%s is missing: run `make deps` (deploy/scripts/ensure-chromium.sh)", chromiumPath)
	}
	root := repoRoot(t)
	axeSource, err := os.ReadFile(filepath.Join(root, ".cache", "axe-core", axeVersion, "axe.min.js"))
	require.NoError(t, err, "axe-core is missing: run `make deps` (deploy/scripts/ensure-axe.sh)")
	shots := filepath.Join(root, ".cache", "screenshots")
	require.NoError(t, os.MkdirAll(shots, 0o750))

	s := startSite(t)
	s.seed(t)

	alloc, cancel := chromedp.NewExecAllocator(t.Context(),
		chromedp.ExecPath(chromiumPath), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-quic", true), chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 900))
	t.Cleanup(cancel)
	// The browser starts with a first tab; each employee gets a browser
	// context of their own (their own cookies) in it.
	first, cancelFirst := chromedp.NewContext(alloc)
	t.Cleanup(cancelFirst)
	require.NoError(t, chromedp.Do(first, chromedp.Navigate("about:blank")))
	alloc = first

	signIn := func(user string) *browser {
		b := newBrowser(alloc, t)
		b.do(t, chromedp.Navigate(s.url+"/"), chromedp.WaitVisible(chromedp.CSS(`button[name=user][value="`+user+`"]`)))
		b.do(t, chromedp.Click(chromedp.CSS(`button[name=user][value="`+user+`"]`)), chromedp.WaitVisible(chromedp.ID("home-feed")))
		return b
	}

	// The sign-in page, before anyone signs in.
	anon := newBrowser(alloc, t)
	anon.do(t, chromedp.Navigate(s.url+"/signin"), chromedp.WaitVisible(chromedp.CSS("form.picker")))
	anon.axe(t, string(axeSource))
	anon.shoot(t, shots, "signin")

	ana := signIn("ana")
	bo := signIn("bo")
	// bo's page is subscribed once its event stream is open.
	bo.do(t, poll(`document.getElementById("home-feed").dataset.live === "open"`, 10*time.Second))
	bo.safe(t)
	require.Equal(t, `<script>window.__pwned=1</script>`, eval[string](t, bo, `document.querySelector("#home-feed .text").textContent.slice(0, 33)`),
		"hostile text is shown as text")
	require.Equal(t, 1, eval[int](t, bo, `document.querySelectorAll('#home-feed a[href="https://example.com/ok"]').length`), "http(s) links are links")

	// ana writes "@b", picks bo from the suggestions with the keyboard,
	// and posts.
	ana.do(t, chromedp.Click(chromedp.ID("compose-text")), chromedp.SendKeys(chromedp.ID("compose-text"), "Thanks @b"),
		chromedp.WaitVisible(chromedp.CSS(`#mention-list li[data-user="bo"]`)))
	ana.do(t, chromedp.KeyEvent("\r"))
	// (CDP sends the Enter's character as an event of its own, which the
	// page cannot cancel as it cancels a real key press: drop it.)
	require.Equal(t, "Thanks @bo ", strings.TrimRight(eval[string](t, ana, `document.getElementById("compose-text").value`), "\n"))
	ana.do(t, chromedp.SetValue(chromedp.ID("compose-text"), "Thanks @bo "))
	ana.do(t, chromedp.SendKeys(chromedp.ID("compose-text"), "the Acme demo is ready "+hostile),
		chromedp.Click(chromedp.CSS(`#composer button[type=submit]`)),
		poll(`document.getElementById("compose-status").textContent === "Posted."`, 10*time.Second))
	// It reaches bo's open page within 2 s, without a reload.
	bo.do(t, poll(`Array.from(document.querySelectorAll("#home-feed .text")).some(p => p.textContent.includes("the Acme demo is ready"))`, 2*time.Second))
	require.Equal(t, "/people/bo", eval[string](t, bo, `new URL(Array.from(document.querySelectorAll("#home-feed .text a")).find(a => a.textContent === "@bo").href).pathname`))
	bo.safe(t)
	ana.safe(t)

	// bo answers in the comment box of ana's post (hostile text and all)
	// and likes it; the page shows both, and ana's bell counts them.
	id := eval[string](t, bo, `Array.from(document.querySelectorAll("#home-feed li.item")).find(li => li.querySelector(".text").textContent.includes("the Acme demo is ready")).dataset.id`)
	item := `#home-feed li[data-id="` + id + `"]`
	bo.do(t, chromedp.Navigate(s.url+"/"), chromedp.WaitVisible(chromedp.ID("comment-"+id)))
	bo.do(t, chromedp.SendKeys(chromedp.ID("comment-"+id), "Great, @ana "+hostile),
		chromedp.Click(chromedp.CSS(item+" form.comment button")), chromedp.WaitVisible(chromedp.CSS(item+" ol.comments li")))
	bo.do(t, chromedp.Click(chromedp.CSS(item+" form.like button")), chromedp.WaitVisible(chromedp.CSS(item+` form.like button[aria-pressed="true"]`)))
	require.Equal(t, "1 like1 comment", eval[string](t, bo, `document.querySelector('`+item+` .counts').textContent`))
	require.True(t, strings.HasPrefix(eval[string](t, bo, `document.querySelector('`+item+` ol.comments li .text').textContent`), "Great, @ana <script>"))
	bo.safe(t)
	anaBell := tidingsv1.NewNotificationServiceClient(s.conn(t, testenv.Employee("ana")))
	testenv.Eventually(t, 10*time.Second, func() bool {
		n, err := anaBell.GetUnreadCount(t.Context(), &tidingsv1.GetUnreadCountRequest{UserId: "ana"})
		return err == nil && n.GetUnreadCount() == 2
	}, "ana was not notified of bo's comment and like")
	ana.do(t, chromedp.Navigate(s.url+"/"), chromedp.WaitVisible(chromedp.CSS("#bell .badge")))
	require.Equal(t, "2", eval[string](t, ana, `document.querySelector("#bell .badge").textContent`))
	ana.do(t, chromedp.Click(chromedp.ID("bell")), chromedp.WaitVisible(chromedp.CSS("ol.notifications")))
	require.ElementsMatch(t, []string{"Unread: Bo Chen mentioned you in a comment", "Unread: Bo Chen liked your post"},
		eval[[]string](t, ana, `Array.from(document.querySelectorAll("ol.notifications .summary")).map(p => p.textContent)`))
	ana.safe(t)
	ana.axe(t, string(axeSource))
	ana.shoot(t, shots, "notifications")
	ana.do(t, chromedp.Click(chromedp.CSS("form.mark-read button")), chromedp.WaitVisible(chromedp.CSS("ol.notifications li:not(.unread)")))
	require.Zero(t, eval[int](t, ana, `document.querySelectorAll("#bell .badge").length`), "all read")

	bo.axe(t, string(axeSource))
	bo.shoot(t, shots, "home")

	// bo follows a record from its page and sees its events at home.
	recordURL := s.url + "/records/crm.opportunity/ACME%2F1"
	bo.do(t, chromedp.Navigate(recordURL), chromedp.WaitVisible(chromedp.CSS("form.follow button")))
	bo.safe(t)
	bo.axe(t, string(axeSource))
	bo.do(t, chromedp.Click(chromedp.CSS("form.follow button")),
		poll(`document.querySelector("form.follow button").textContent === "Following"`, 10*time.Second))
	bo.shoot(t, shots, "record")
	bo.do(t, chromedp.Navigate(s.url+"/"), poll(`document.getElementById("home-feed").dataset.live === "open"`, 10*time.Second))
	crm := tidingsv1.NewRecordServiceClient(s.conn(t, testenv.App("crm")))
	_, err = crm.PostRecordActivity(t.Context(), &tidingsv1.PostRecordActivityRequest{
		Ref: &tidingsv1.RecordRef{Type: "crm.opportunity", ExternalId: "ACME/1"}, EventId: "won", Verb: "stage_changed", Text: "Closed won",
		FieldChanges: []*tidingsv1.FieldChange{{Field: "Stage", OldValue: "Negotiation", NewValue: "Closed Won " + hostile}},
	})
	require.NoError(t, err)
	bo.do(t, poll(`Array.from(document.querySelectorAll("#home-feed ins")).some(e => e.textContent.startsWith("Closed Won"))`, 5*time.Second))
	bo.safe(t)

	// A restricted record: cy may see it, bo may not, through any page.
	support := tidingsv1.NewRecordServiceClient(s.conn(t, testenv.App("support")))
	_, err = support.PostRecordActivity(t.Context(), &tidingsv1.PostRecordActivityRequest{
		Ref: &tidingsv1.RecordRef{Type: "support.incident", ExternalId: "INC-7"}, EventId: "e1", Verb: "escalated",
		Text: "Escalated to @bo and @cy", OnBehalfOf: "cy",
	})
	require.NoError(t, err)
	cyHome := tidingsv1.NewTimelineServiceClient(s.conn(t, testenv.Employee("cy")))
	testenv.Eventually(t, 10*time.Second, func() bool {
		tl, err := cyHome.GetHomeTimeline(t.Context(), &tidingsv1.GetHomeTimelineRequest{UserId: "cy"})
		return err == nil && len(tl.GetItems()) > 0 && tl.GetItems()[0].GetActivity().GetVerb() == "escalated"
	}, "the restricted event did not reach its reader")
	cy := signIn("cy")
	cy.do(t, poll(`document.body.textContent.includes("Secret incident INC-7")`, 5*time.Second))
	bo.do(t, chromedp.Navigate(s.url+"/"), chromedp.WaitVisible(chromedp.ID("home-feed")))
	require.False(t, eval[bool](t, bo, `document.body.textContent.includes("INC-7") || document.body.textContent.includes("Escalated")`))
	bo.do(t, chromedp.Navigate(s.url+"/records/support.incident/INC-7"), chromedp.WaitVisible(chromedp.CSS("main h1")))
	require.Equal(t, "Not Found", eval[string](t, bo, `document.querySelector("main h1").textContent`))
	require.False(t, eval[bool](t, bo, `document.body.textContent.includes("Secret incident")`))
	bo.do(t, chromedp.Navigate(s.url+"/people/cy"), chromedp.WaitVisible(chromedp.CSS("main h1")))
	require.False(t, eval[bool](t, bo, `document.body.textContent.includes("INC-7") || document.body.textContent.includes("Escalated")`))
	// Nor through the JSON API with bo's own session.
	require.InDelta(t, 5, eval[float64](t, bo, `fetch("/v1/records/support.incident/INC-7").then(r => r.json()).then(s => s.code)`), 0)

	// The other pages: a hostile profile, the people list, and status.
	bo.do(t, chromedp.Navigate(s.url+"/people/mal"), chromedp.WaitVisible(chromedp.CSS("main h1")))
	bo.safe(t)
	bo.axe(t, string(axeSource))
	bo.shoot(t, shots, "person")
	bo.do(t, chromedp.Navigate(s.url+"/people"), chromedp.WaitVisible(chromedp.CSS("ul.people")))
	bo.safe(t)
	bo.axe(t, string(axeSource))

	// A state-changing API call without the CSRF token is refused.
	require.InDelta(t, 403, eval[float64](t, bo, `fetch("/v1/users/bo/following", {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify({userId: "cy"})}).then(r => r.status)`), 0)
	// The session cookie is out of the script's reach.
	require.NotContains(t, eval[string](t, bo, `document.cookie`), "tidings_session")

	admin := newBrowser(alloc, t)
	admin.do(t, chromedp.Navigate(s.url+"/signin"), chromedp.WaitVisible(chromedp.CSS(`button[value="dev-admin"]`)),
		chromedp.Click(chromedp.CSS(`button[value="dev-admin"]`)), chromedp.WaitVisible(chromedp.CSS("table")))
	require.Contains(t, eval[string](t, admin, `document.body.textContent`), "ACTIVITIES")
	admin.axe(t, string(axeSource))
	admin.shoot(t, shots, "admin")
	t.Logf("screenshots in %s", shots)
}
