// Package entity turns entity references (a user or a record) into the
// compact keys used in Redis and on the wire between components, and back.
//
//	user    "u:<user id>"
//	record  "r:<type>:<external id>"
//
// Record types never hold ":", so the first ":" after "r:" ends the type.
// Neither ids nor types hold braces, so keys are safe inside Redis hash tags.
package entity

import (
	"errors"
	"strings"

	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

// ErrMalformed means a key is not an entity key.
var ErrMalformed = errors.New("malformed entity key")

// Key returns the key of an entity reference.
func Key(ref *tidingsv1.EntityRef) string {
	if r := ref.GetRecord(); r != nil {
		return RecordKey(r)
	}
	return UserKey(ref.GetUserId())
}

// UserKey returns the key of a user.
func UserKey(userID string) string { return "u:" + userID }

// RecordKey returns the key of a record.
func RecordKey(r *tidingsv1.RecordRef) string { return "r:" + r.GetType() + ":" + r.GetExternalId() }

// RecordName names a record in messages to callers, as "<type>/<external
// id>" (the form the CLI takes); RecordKey is internal and never shown.
func RecordName(r *tidingsv1.RecordRef) string { return r.GetType() + "/" + r.GetExternalId() }

// Parse returns the reference of a key.
func Parse(key string) (*tidingsv1.EntityRef, error) {
	switch {
	case strings.HasPrefix(key, "u:") && len(key) > 2:
		return User(key[2:]), nil
	case strings.HasPrefix(key, "r:"):
		typ, ext, ok := strings.Cut(key[2:], ":")
		if !ok || typ == "" || ext == "" {
			return nil, ErrMalformed
		}
		return Record(typ, ext), nil
	}
	return nil, ErrMalformed
}

// User returns the reference of a user.
func User(id string) *tidingsv1.EntityRef {
	return &tidingsv1.EntityRef{Entity: &tidingsv1.EntityRef_UserId{UserId: id}}
}

// Record returns the reference of a record.
func Record(typ, externalID string) *tidingsv1.EntityRef {
	return &tidingsv1.EntityRef{Entity: &tidingsv1.EntityRef_Record{Record: &tidingsv1.RecordRef{Type: typ, ExternalId: externalID}}}
}

// IsUser reports whether a key names a user.
func IsUser(key string) bool { return strings.HasPrefix(key, "u:") }

// App returns the app that owns a record type: its first segment.
func App(recordType string) string {
	app, _, _ := strings.Cut(recordType, ".")
	return app
}

// ActorUser returns the user an activity is by: its employee (or admin)
// author, or the user an app acted for ("" when an app acted for no one).
func ActorUser(a *tidingsv1.Activity) string {
	if k := a.GetActor().GetKind(); k == tidingsv1.CallerKind_CALLER_KIND_EMPLOYEE || k == tidingsv1.CallerKind_CALLER_KIND_ADMIN {
		return a.GetActor().GetId()
	}
	return a.GetOnBehalfOf()
}

// Sources returns the keys of the entities whose feeds hold an activity,
// and whose followers receive it: its actor (when a user) and its record.
func Sources(a *tidingsv1.Activity) []string {
	out := make([]string, 0, 2)
	if u := ActorUser(a); u != "" {
		out = append(out, UserKey(u))
	}
	if r := a.GetRecord(); r != nil {
		out = append(out, RecordKey(r))
	}
	return out
}
