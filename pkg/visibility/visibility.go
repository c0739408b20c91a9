// Package visibility decides who may see what. It is the one place that
// answers "may this caller see this record, and so its feed, its
// followers, its activities?": every service asks it before answering, and
// the fan-out asks it before writing a restricted record's activity into a
// home timeline. What a caller may not see does not exist for them: the
// checks answer NotFound, never PermissionDenied, so that a refusal does
// not reveal that the thing exists.
//
// The rules:
//
//   - a public record is seen by everyone;
//   - a restricted record is seen by its owner and its readers, by the app
//     whose namespace holds its type, and by admins; other employees and
//     other apps do not see it;
//   - users (profiles) are seen by everyone.
package visibility

import (
	"context"
	"errors"
	"slices"

	"github.com/tidingshq/tidings/pkg/activitystore"
	"github.com/tidingshq/tidings/pkg/apierr"
	"github.com/tidingshq/tidings/pkg/auth"
	"github.com/tidingshq/tidings/pkg/entity"
	"github.com/tidingshq/tidings/pkg/profilestore"
	"github.com/tidingshq/tidings/pkg/recordstore"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

// CanSee reports whether a caller may see a record.
func CanSee(r *tidingsv1.Record, id auth.Identity) bool {
	if r.GetVisibility() != tidingsv1.Visibility_VISIBILITY_RESTRICTED {
		return true
	}
	switch id.Kind {
	case auth.KindAdmin:
		return true
	case auth.KindApp:
		return entity.App(r.GetRef().GetType()) == id.ID
	case auth.KindEmployee:
		return UserMaySee(r, id.ID)
	}
	return false
}

// UserMaySee reports whether an employee may see a record.
func UserMaySee(r *tidingsv1.Record, userID string) bool {
	if r.GetVisibility() != tidingsv1.Visibility_VISIBILITY_RESTRICTED {
		return true
	}
	return r.GetOwnerId() == userID || slices.Contains(r.GetReaderIds(), userID)
}

// Audience returns which users may receive an activity about a record, as
// the fan-out needs it: nil when everyone may (a public record, or no
// record at all), a filter otherwise. found is false for a record that
// does not exist (deleted): its activities reach no one new.
func Audience(r *tidingsv1.Record, found bool) func(userID string) bool {
	switch {
	case !found:
		return func(string) bool { return false }
	case r.GetVisibility() != tidingsv1.Visibility_VISIBILITY_RESTRICTED:
		return nil
	}
	return func(u string) bool { return UserMaySee(r, u) }
}

// Checker reads what the rules need.
type Checker struct {
	profiles *profilestore.Store
	records  *recordstore.Store
	bodies   *activitystore.Store
}

// New returns a Checker over the profile, record and activity projections.
func New(profiles *profilestore.Store, records *recordstore.Store, bodies *activitystore.Store) *Checker {
	return &Checker{profiles: profiles, records: records, bodies: bodies}
}

func notFound(ref *tidingsv1.RecordRef) error {
	return apierr.NotFound("no record %s", entity.RecordName(ref))
}

// Record returns a record if it exists and the caller may see it, and
// NotFound otherwise.
func (c *Checker) Record(ctx context.Context, ref *tidingsv1.RecordRef, id auth.Identity) (*tidingsv1.Record, error) {
	rec, err := c.records.Get(ctx, ref)
	if errors.Is(err, recordstore.ErrNotFound) || (err == nil && !CanSee(rec, id)) {
		return nil, notFound(ref)
	}
	return rec, err
}

// Entity returns NotFound when an entity is a record that does not exist or
// that the caller may not see; users are always visible.
func (c *Checker) Entity(ctx context.Context, ref *tidingsv1.EntityRef, id auth.Identity) error {
	if r := ref.GetRecord(); r != nil {
		_, err := c.Record(ctx, r, id)
		return err
	}
	return nil
}

// Resolve returns NotFound unless an entity may be followed: a record that
// exists, or a user with a profile; FailedPrecondition for a user whose
// profile is deactivated (offboarded). For a record it returns the record
// (nil for a user).
func (c *Checker) Resolve(ctx context.Context, ref *tidingsv1.EntityRef) (*tidingsv1.Record, error) {
	if r := ref.GetRecord(); r != nil {
		rec, err := c.records.Get(ctx, r)
		if errors.Is(err, recordstore.ErrNotFound) {
			return nil, notFound(r)
		}
		return rec, err
	}
	return nil, c.ActiveUser(ctx, ref.GetUserId())
}

// ActiveUser returns NotFound unless a user has a profile, and
// FailedPrecondition when the profile is deactivated: what following, or
// being followed, requires.
func (c *Checker) ActiveUser(ctx context.Context, userID string) error {
	found, active, err := c.profiles.Active(ctx, userID)
	switch {
	case err != nil:
		return err
	case !found:
		return apierr.NotFound("no user %s", userID)
	case !active:
		return apierr.FailedPrecondition("user %s is deactivated", userID)
	}
	return nil
}

// Followable returns nil when userID may follow an entity: the user has an
// active profile (FailedPrecondition or NotFound otherwise, as
// ActiveUser), and the entity may be followed (Resolve) and seen by them
// (NotFound otherwise).
func (c *Checker) Followable(ctx context.Context, ref *tidingsv1.EntityRef, userID string) error {
	if err := c.ActiveUser(ctx, userID); err != nil {
		return err
	}
	rec, err := c.Resolve(ctx, ref)
	if err != nil {
		return err
	}
	if rec != nil && !UserMaySee(rec, userID) {
		return notFound(rec.GetRef())
	}
	return nil
}

// Entities reports, for each entity key, whether the caller may see it, in
// one read of the records among them. Keys that do not parse are hidden.
func (c *Checker) Entities(ctx context.Context, keys []string, id auth.Identity) ([]bool, error) {
	out := make([]bool, len(keys))
	var (
		refs []*tidingsv1.RecordRef
		at   []int
	)
	for i, k := range keys {
		ref, err := entity.Parse(k)
		switch {
		case err != nil:
		case ref.GetRecord() != nil:
			refs = append(refs, ref.GetRecord())
			at = append(at, i)
		default:
			out[i] = true
		}
	}
	if len(refs) == 0 {
		return out, nil
	}
	recs, err := c.records.GetMany(ctx, refs)
	if err != nil {
		return nil, err
	}
	for j, r := range recs {
		out[at[j]] = r != nil && CanSee(r, id)
	}
	return out, nil
}

// Activity returns an activity if it exists (and is not deleted) and the
// caller may see it, and NotFound otherwise.
func (c *Checker) Activity(ctx context.Context, activityID string, id auth.Identity) (*tidingsv1.Activity, error) {
	a, err := c.bodies.Get(ctx, activityID)
	if errors.Is(err, activitystore.ErrNotFound) {
		return nil, apierr.NotFound("no activity %s", activityID)
	}
	if err != nil {
		return nil, err
	}
	seen, _, err := c.Activities(ctx, []*tidingsv1.Activity{a}, id)
	if err != nil {
		return nil, err
	}
	if !seen[0] {
		return nil, apierr.NotFound("no activity %s", activityID)
	}
	return a, nil
}

// Activities reports, for each activity, whether the caller may see it:
// nil activities (missing or deleted) are not seen, nor are those about a
// record that is gone or hidden from the caller. It returns the records it
// read, by entity key, for callers that show them; one read in all.
func (c *Checker) Activities(ctx context.Context, acts []*tidingsv1.Activity, id auth.Identity) ([]bool, map[string]*tidingsv1.Record, error) {
	var refs []*tidingsv1.RecordRef
	seen := map[string]bool{}
	for _, a := range acts {
		if r := a.GetRecord(); r != nil && !seen[entity.RecordKey(r)] {
			seen[entity.RecordKey(r)] = true
			refs = append(refs, r)
		}
	}
	records := make(map[string]*tidingsv1.Record, len(refs))
	if len(refs) > 0 {
		recs, err := c.records.GetMany(ctx, refs)
		if err != nil {
			return nil, nil, err
		}
		for i, r := range recs {
			if r != nil {
				records[entity.RecordKey(refs[i])] = r
			}
		}
	}
	out := make([]bool, len(acts))
	for i, a := range acts {
		out[i] = a != nil && ActivityVisible(a, records, id)
	}
	return out, records, nil
}

// ActivityVisible reports whether the caller may see an activity, given
// the records of a batch by entity key (as Activities returns them).
func ActivityVisible(a *tidingsv1.Activity, records map[string]*tidingsv1.Record, id auth.Identity) bool {
	r := a.GetRecord()
	if r == nil {
		return true
	}
	rec := records[entity.RecordKey(r)]
	return rec != nil && CanSee(rec, id)
}

// FollowableEach reports, for each edge, why its user may not follow its
// entity, or "" when they may: the rules of Followable, for a whole batch in
// one read of the profiles and one of the records (what graph imports
// check before they write anything).
func (c *Checker) FollowableEach(ctx context.Context, edges []*tidingsv1.Follow) ([]string, error) {
	var users []string
	userAt := map[string]int{}
	addUser := func(u string) {
		if _, ok := userAt[u]; !ok {
			userAt[u] = len(users)
			users = append(users, u)
		}
	}
	var refs []*tidingsv1.RecordRef
	refAt := map[string]int{}
	for _, e := range edges {
		addUser(e.GetUserId())
		if r := e.GetEntity().GetRecord(); r != nil {
			if k := entity.RecordKey(r); refAt[k] == 0 {
				refs = append(refs, r)
				refAt[k] = len(refs) // from 1
			}
		} else {
			addUser(e.GetEntity().GetUserId())
		}
	}
	found, active, err := c.profiles.ActiveMany(ctx, users)
	if err != nil {
		return nil, err
	}
	var recs []*tidingsv1.Record
	if len(refs) > 0 {
		if recs, err = c.records.GetMany(ctx, refs); err != nil {
			return nil, err
		}
	}
	userProblem := func(u string) string {
		i := userAt[u]
		switch {
		case !found[i]:
			return "no user " + u
		case !active[i]:
			return "user " + u + " is deactivated"
		}
		return ""
	}
	out := make([]string, len(edges))
	for i, e := range edges {
		if p := userProblem(e.GetUserId()); p != "" {
			out[i] = p
			continue
		}
		r := e.GetEntity().GetRecord()
		if r == nil {
			out[i] = userProblem(e.GetEntity().GetUserId())
			continue
		}
		rec := recs[refAt[entity.RecordKey(r)]-1]
		switch {
		case rec == nil:
			out[i] = "no record " + entity.RecordName(r)
		case !UserMaySee(rec, e.GetUserId()):
			out[i] = e.GetUserId() + " may not see restricted record " + entity.RecordName(r)
		}
	}
	return out, nil
}
