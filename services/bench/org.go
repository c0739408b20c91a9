package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

// Org is a synthetic organisation: employees who follow colleagues with
// power-law popularity (a few people are followed by most of the company,
// most by a handful), and CRM records with an owner and a few followers.
type Org struct {
	Users []string
	// Following[i] are the users user i follows (indexes into Users).
	Following [][]int32
	// Followers[i] are the users who follow user i.
	Followers [][]int32
	Records   []Record
	Edges     int
}

// Record is a synthetic CRM record.
type Record struct {
	Ref       *tidingsv1.RecordRef
	Owner     int32
	Followers []int32
	// Restricted records are visible to their owner and followers only.
	Restricted bool
}

// Shape of the organisation.
const (
	// An employee follows their team, their manager, a few leaders and
	// colleagues: 5 to 35 people, 20 on average.
	minFollowing     = 5
	maxFollowing     = 35
	zipfExponent     = 1.1
	recordsPerUser   = 0.1
	recordFollowers  = 8
	restrictedEveryN = 10
	departmentSize   = 50
)

// NewOrg generates an organisation of n users, the same one for a seed.
func NewOrg(n int, seed uint64) *Org {
	rng := rand.New(rand.NewPCG(seed, 0x7469646e))
	o := &Org{Users: make([]string, n), Following: make([][]int32, n), Followers: make([][]int32, n)}
	for i := range o.Users {
		o.Users[i] = fmt.Sprintf("u%06d", i)
	}
	// Popularity rank → user, so that the most followed are not the
	// first ids.
	byRank := rng.Perm(n)
	zipf := rand.NewZipf(rng, zipfExponent, 1, uint64(n-1))
	for i := range n {
		want := minFollowing + rng.IntN(maxFollowing-minFollowing+1)
		seen := make(map[int32]bool, want)
		for tries := 0; len(seen) < want && tries < 4*want; tries++ {
			j := int32(byRank[zipf.Uint64()])
			if int(j) == i || seen[j] {
				continue
			}
			seen[j] = true
			o.Following[i] = append(o.Following[i], j)
			o.Followers[j] = append(o.Followers[j], int32(i))
		}
		o.Edges += len(o.Following[i])
	}
	nrec := max(1, int(float64(n)*recordsPerUser))
	o.Records = make([]Record, nrec)
	for r := range o.Records {
		rec := Record{
			Ref:        &tidingsv1.RecordRef{Type: "crm.opportunity", ExternalId: fmt.Sprintf("opp-%06d", r)},
			Owner:      int32(rng.IntN(n)),
			Restricted: r%restrictedEveryN == 0,
		}
		rec.Followers = append(rec.Followers, rec.Owner)
		for len(rec.Followers) < min(recordFollowers, n) {
			if u := int32(rng.IntN(n)); !slices.Contains(rec.Followers, u) {
				rec.Followers = append(rec.Followers, u)
			}
		}
		o.Edges += len(rec.Followers)
		o.Records[r] = rec
	}
	return o
}

// HotEntities counts the users followed by more than on users.
func (o *Org) HotEntities(on int64) int {
	n := 0
	for _, f := range o.Followers {
		if int64(len(f)) > on {
			n++
		}
	}
	return n
}

// Build writes the organisation into a stack through its API: the
// directory (as the HR app), the records (as the CRM app) and the follow
// graph (an admin import), then waits until the worker has projected it.
func (o *Org) Build(ctx context.Context, c *client, progress func(string, ...any)) error {
	start := time.Now()
	if err := o.buildProfiles(ctx, c); err != nil {
		return err
	}
	if err := o.buildRecords(ctx, c); err != nil {
		return err
	}
	if err := o.buildGraph(ctx, c); err != nil {
		return err
	}
	if _, err := c.waitCaughtUp(ctx, 10*time.Minute); err != nil {
		return err
	}
	progress("organisation built: %d users, %d records, %d follow edges in %s",
		len(o.Users), len(o.Records), o.Edges, time.Since(start).Round(time.Millisecond))
	return nil
}

func (o *Org) buildProfiles(ctx context.Context, c *client) error {
	const batch = 500
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(4)
	for lo := 0; lo < len(o.Users); lo += batch {
		hi := min(lo+batch, len(o.Users))
		g.Go(func() error {
			req := &tidingsv1.BatchUpsertProfilesRequest{}
			for i := lo; i < hi; i++ {
				dept := i / departmentSize
				manager := o.Users[dept*departmentSize] // the department's head
				if i == dept*departmentSize {
					manager = o.Users[0] // who reports to the first employee
				}
				if i == 0 {
					manager = ""
				}
				req.Profiles = append(req.Profiles, &tidingsv1.Profile{
					UserId:      o.Users[i],
					DisplayName: fmt.Sprintf("Employee %d", i),
					Email:       o.Users[i] + "@example.com",
					Title:       "Engineer",
					Department:  fmt.Sprintf("Dept %d", dept),
					ManagerId:   manager,
				})
			}
			if _, err := c.profiles.BatchUpsertProfiles(gctx, req, c.as(hrApp)); err != nil {
				return fmt.Errorf("upsert profiles %d..%d: %w", lo, hi-1, err)
			}
			return nil
		})
	}
	return g.Wait()
}

func (o *Org) buildRecords(ctx context.Context, c *client) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	for _, r := range o.Records {
		g.Go(func() error {
			rec := &tidingsv1.Record{
				Ref: r.Ref, Title: "Opportunity " + r.Ref.GetExternalId(), OwnerId: o.Users[r.Owner],
				Visibility: tidingsv1.Visibility_VISIBILITY_PUBLIC,
			}
			if r.Restricted {
				rec.Visibility = tidingsv1.Visibility_VISIBILITY_RESTRICTED
				for _, u := range r.Followers {
					rec.ReaderIds = append(rec.ReaderIds, o.Users[u])
				}
			}
			if _, err := c.records.UpsertRecord(gctx, &tidingsv1.UpsertRecordRequest{Record: rec}, c.as(crmApp)); err != nil {
				return fmt.Errorf("upsert record %s: %w", r.Ref.GetExternalId(), err)
			}
			return nil
		})
	}
	return g.Wait()
}

// buildGraph imports every follow edge on a few concurrent streams.
func (o *Org) buildGraph(ctx context.Context, c *client) error {
	var follows []*tidingsv1.Follow
	for i, fs := range o.Following {
		for _, j := range fs {
			follows = append(follows, &tidingsv1.Follow{
				UserId: o.Users[i], Entity: &tidingsv1.EntityRef{Entity: &tidingsv1.EntityRef_UserId{UserId: o.Users[j]}},
			})
		}
	}
	for _, r := range o.Records {
		for _, u := range r.Followers {
			follows = append(follows, &tidingsv1.Follow{
				UserId: o.Users[u], Entity: &tidingsv1.EntityRef{Entity: &tidingsv1.EntityRef_Record{Record: r.Ref}},
			})
		}
	}
	return importFollows(ctx, c, follows)
}

// importFollows imports follows on 4 concurrent ImportGraph streams.
func importFollows(ctx context.Context, c *client, follows []*tidingsv1.Follow) error {
	const streams, perMessage = 4, 5000
	var imported atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	per := (len(follows) + streams - 1) / streams
	for lo := 0; lo < len(follows); lo += per {
		part := follows[lo:min(lo+per, len(follows))]
		g.Go(func() error {
			stream, err := c.admin.ImportGraph(gctx, c.as(adminCaller))
			if err != nil {
				return fmt.Errorf("import graph: %w", err)
			}
			for m := 0; m < len(part); m += perMessage {
				if err := stream.Send(&tidingsv1.ImportGraphRequest{Follows: part[m:min(m+perMessage, len(part))]}); err != nil {
					break // the error comes with CloseAndRecv
				}
			}
			resp, err := stream.CloseAndRecv()
			if err != nil {
				return fmt.Errorf("import graph: %w", err)
			}
			if resp.GetRejectedCount() > 0 {
				return fmt.Errorf("import graph: %d rows rejected, first: %v", resp.GetRejectedCount(), resp.GetErrors()[0])
			}
			imported.Add(resp.GetImportedCount() + resp.GetUnchangedCount())
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	if n := imported.Load(); n != int64(len(follows)) {
		return fmt.Errorf("import graph: %d of %d follows accounted for", n, len(follows))
	}
	return nil
}
