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
