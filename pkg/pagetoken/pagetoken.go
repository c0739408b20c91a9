// Package pagetoken makes the opaque page tokens of list RPCs.
//
// A token names where the next page starts (a position in some ordering) and
// is bound to the query that made it: a token handed to a different query,
// or one that was tampered with, is rejected with a clear error instead of
// returning a wrong page.
package pagetoken

import (
	"encoding/base64"
	"errors"
	"hash/crc32"
	"strings"
)

const version = "1"

// ErrInvalid means a token was malformed, or made for another query.
var ErrInvalid = errors.New("invalid page token")

// Encode returns the token for a page starting after position, for the query
// named by scope (the RPC and its filters).
func Encode(scope, position string) string {
	sum := crc32.ChecksumIEEE([]byte(scope + "\x00" + position))
	raw := version + "\x00" + position + "\x00" + encodeSum(sum)
	return base64.RawURLEncoding.EncodeToString([]byte(raw))
}

// Decode returns the position of a token made by Encode for the same scope.
// The empty token decodes to the empty position (the first page).
func Decode(scope, token string) (string, error) {
	if token == "" {
		return "", nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil {
		return "", ErrInvalid
	}
	parts := strings.Split(string(raw), "\x00")
	if len(parts) != 3 || parts[0] != version {
		return "", ErrInvalid
	}
	position := parts[1]
	if parts[2] != encodeSum(crc32.ChecksumIEEE([]byte(scope+"\x00"+position))) {
		return "", ErrInvalid
	}
	return position, nil
}

func encodeSum(sum uint32) string {
	return base64.RawURLEncoding.EncodeToString([]byte{byte(sum >> 24), byte(sum >> 16), byte(sum >> 8), byte(sum)})
}
