package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/tidingshq/tidings/pkg/auth"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

// api calls the cluster's API processes through the public gRPC API, as
// any caller, spreading calls over every process.
type api struct {
	conns  []*grpc.ClientConn
	tokens auth.TokenConfig
	mu     sync.Mutex
	creds  map[string]grpc.CallOption
	next   atomic.Uint64
}

func newAPI(addrs []string, secretFile string) (*api, error) {
	secret, err := os.ReadFile(secretFile)
	if err != nil {
		return nil, fmt.Errorf("read auth secret: %w", err)
	}
	a := &api{
		tokens: auth.TokenConfig{Secret: []byte(strings.TrimSpace(string(secret))), Issuer: "tidings", Audience: "tidings"},
		creds:  map[string]grpc.CallOption{},
	}
	for _, addr := range addrs {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			a.close()
			return nil, fmt.Errorf("dial %s: %w", addr, err)
		}
		a.conns = append(a.conns, conn)
	}
	return a, nil
}

func (a *api) close() {
	for _, c := range a.conns {
		_ = c.Close()
	}
}

// conn returns the connections in turn, so a retry goes to another process.
func (a *api) conn() *grpc.ClientConn { return a.conns[a.next.Add(1)%uint64(len(a.conns))] }

// as returns the credentials of a caller; tokens are minted once.
func (a *api) as(kind auth.Kind, id string) grpc.CallOption {
	key := string(kind) + "/" + id
	a.mu.Lock()
	defer a.mu.Unlock()
	if o, ok := a.creds[key]; ok {
		return o
	}
	tok, err := auth.Mint(a.tokens, auth.Identity{Kind: kind, ID: id}, 24*time.Hour, time.Now())
	if err != nil {
		panic(fmt.Sprintf("mint token for %s: %v", key, err)) // the secret was checked at start
	}
	o := grpc.PerRPCCredentials(auth.PerRPCToken(tok))
	a.creds[key] = o
	return o
}

func (a *api) admin() grpc.CallOption { return a.as(auth.KindAdmin, "faultsuite") }

// retry calls fn on successive API processes until it succeeds, fails with
// a code no retry can change, or limit passes. Failed attempts are counted
// by code in errs.
func retry(ctx context.Context, limit time.Duration, errs *errCounts, fn func(ctx context.Context) error) error {
	deadline := time.Now().Add(limit)
	backoff := 100 * time.Millisecond
	for {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := fn(actx)
		cancel()
		if err == nil {
			return nil
		}
		code := status.Code(err)
		errs.add(code)
		switch code {
		case codes.InvalidArgument, codes.PermissionDenied, codes.Unauthenticated, codes.NotFound, codes.FailedPrecondition, codes.AlreadyExists:
			return err
		}
		if time.Now().Add(backoff).After(deadline) || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// errCounts counts failed calls by status code.
type errCounts struct {
	mu sync.Mutex
	n  map[codes.Code]int
}

func (e *errCounts) add(c codes.Code) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.n == nil {
		e.n = map[codes.Code]int{}
	}
	e.n[c]++
}

func (e *errCounts) String() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var parts []string
	for c, n := range e.n {
		parts = append(parts, fmt.Sprintf("%s×%d", c, n))
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

// org is one fault's own users: authors who post and followers who each
// follow a few of them. Every fault has its own, so the checks of one fault
// are not disturbed by another's.
type org struct {
	authors   []string
	followers []string
	follows   map[string][]string // follower -> authors
}

func newOrg(prefix string, authors, followers, perFollower int) *org {
	o := &org{follows: map[string][]string{}}
	for i := range authors {
		o.authors = append(o.authors, fmt.Sprintf("%s-a%02d", prefix, i))
	}
	for i := range followers {
		f := fmt.Sprintf("%s-f%02d", prefix, i)
		o.followers = append(o.followers, f)
		for k := range perFollower {
			o.follows[f] = append(o.follows[f], o.authors[(i+k)%authors])
		}
	}
	return o
}

// create makes the profiles and the follow edges through the API.
func (o *org) create(ctx context.Context, a *api) error {
	var errs errCounts
	var profiles []*tidingsv1.Profile
	for _, u := range slices.Concat(o.authors, o.followers) {
		profiles = append(profiles, &tidingsv1.Profile{UserId: u, DisplayName: strings.ToUpper(u), Department: "Faults"})
	}
	if err := retry(ctx, 30*time.Second, &errs, func(ctx context.Context) error {
		_, err := tidingsv1.NewProfileServiceClient(a.conn()).BatchUpsertProfiles(ctx, &tidingsv1.BatchUpsertProfilesRequest{Profiles: profiles}, a.admin())
		return err
	}); err != nil {
		return fmt.Errorf("create profiles: %w", err)
	}
	byAuthor := map[string][]string{}
	for f, as := range o.follows {
		for _, au := range as {
			byAuthor[au] = append(byAuthor[au], f)
		}
	}
	for au, fs := range byAuthor {
		if err := retry(ctx, 30*time.Second, &errs, func(ctx context.Context) error {
			_, err := tidingsv1.NewAdminServiceClient(a.conn()).BulkFollow(ctx, &tidingsv1.BulkFollowRequest{
				Users:  &tidingsv1.UserSelector{Selector: &tidingsv1.UserSelector_Users{Users: &tidingsv1.UserList{UserIds: fs}}},
				Entity: &tidingsv1.EntityRef{Entity: &tidingsv1.EntityRef_UserId{UserId: au}},
			}, a.admin())
			return err
		}); err != nil {
			return fmt.Errorf("follow %s: %w", au, err)
		}
	}
	return nil
}

// post is one acknowledged post.
type post struct {
	id, author, text string
}

// ledger is what the API acknowledged during one fault, and what it did
// not answer for (ambiguous: it may or may not have happened).
type ledger struct {
	mu             sync.Mutex
	posts          map[string]post // by id
	deleted        map[string]bool // acknowledged deletes
	ambiguousText  map[string]bool // posts that got no answer, by text
	ambiguousIDs   map[string]bool // deletes that got no answer
	live           map[string][]string
	postErrs       errCounts
	deleteAttempts int
}

func newLedger() *ledger {
	return &ledger{
		posts: map[string]post{}, deleted: map[string]bool{},
		ambiguousText: map[string]bool{}, ambiguousIDs: map[string]bool{},
		live: map[string][]string{},
	}
}

// load drives a steady stream of posts, and some deletes, through the API
// until stop is called.
type load struct {
	o      *org
	a      *api
	l      *ledger
	prefix string
	cancel context.CancelFunc
	done   chan struct{}
	n      atomic.Int64
}

// Every eighth call deletes one of the author's posts.
const deleteEvery = 8

// The load gives up on a call after this long; a post that was given up
// on, or a post without an idempotency key that failed, is ambiguous.
const giveUpAfter = 90 * time.Second

func startLoad(ctx context.Context, o *org, a *api, l *ledger, prefix string, perSecond int) *load {
	ctx, cancel := context.WithCancel(ctx)
	ld := &load{o: o, a: a, l: l, prefix: prefix, cancel: cancel, done: make(chan struct{})}
	jobs := make(chan int64)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for n := range jobs {
				ld.one(ctx, n)
			}
		})
	}
	go func() {
		defer close(ld.done)
		defer wg.Wait()
		defer close(jobs)
		tick := time.NewTicker(time.Second / time.Duration(perSecond))
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				// A tick finds a free caller or is skipped: when the
				// cluster stalls, the load waits with it.
				select {
				case jobs <- ld.n.Add(1):
				default:
				}
			}
		}
	}()
	return ld
}

// stop ends the load and waits for calls in flight, which may take up to
// giveUpAfter when the cluster does not answer.
func (ld *load) stop() {
	ld.cancel()
	<-ld.done
}

func (ld *load) one(ctx context.Context, n int64) {
	author := ld.o.authors[int(n)%len(ld.o.authors)]
	if n%deleteEvery == 0 {
		ld.deleteOne(ctx, author)
		return
	}
	text := fmt.Sprintf("%s post %d", ld.prefix, n)
	req := &tidingsv1.PostActivityRequest{ActorUserId: author, Text: text}
	// Half the posts carry an idempotency key and are retried until they
	// are acknowledged; the other half are tried once, as a client without
	// keys would.
	keyed := n%2 == 0
	limit := time.Duration(0)
	if keyed {
		req.IdempotencyKey = fmt.Sprintf("%s:%d", ld.prefix, n)
		limit = giveUpAfter
	}
	var resp *tidingsv1.PostActivityResponse
	// The calls of a stopped load still finish: what was sent is settled.
	err := retry(context.WithoutCancel(ctx), limit, &ld.l.postErrs, func(ctx context.Context) error {
		var err error
		resp, err = tidingsv1.NewActivityServiceClient(ld.a.conn()).PostActivity(ctx, req, ld.a.as(auth.KindEmployee, author))
		return err
	})
	ld.l.mu.Lock()
	defer ld.l.mu.Unlock()
	if err != nil {
		ld.l.ambiguousText[text] = true
		return
	}
	id := resp.GetActivity().GetId()
	ld.l.posts[id] = post{id: id, author: author, text: text}
	ld.l.live[author] = append(ld.l.live[author], id)
}

// deleteOne deletes the author's oldest live post.
func (ld *load) deleteOne(ctx context.Context, author string) {
	ld.l.mu.Lock()
	live := ld.l.live[author]
	if len(live) == 0 {
		ld.l.mu.Unlock()
		return
	}
	id := live[0]
	ld.l.live[author] = live[1:]
	ld.l.deleteAttempts++
	ld.l.mu.Unlock()
	err := retry(context.WithoutCancel(ctx), giveUpAfter, &ld.l.postErrs, func(ctx context.Context) error {
		_, err := tidingsv1.NewActivityServiceClient(ld.a.conn()).DeleteActivity(ctx, &tidingsv1.DeleteActivityRequest{Id: id}, ld.a.as(auth.KindEmployee, author))
		return err
	})
	ld.l.mu.Lock()
	defer ld.l.mu.Unlock()
	if err != nil {
		ld.l.ambiguousIDs[id] = true
		return
	}
	ld.l.deleted[id] = true
}
