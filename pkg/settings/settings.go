// Package settings keeps the few settings admins change at run time (the
// auto-follow rules) in a JetStream key-value bucket: replicated like the
// streams, never only in Redis.
package settings

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/tidingshq/tidings/pkg/eventlog"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

// Bucket is the key-value bucket's name.
const Bucket = "tidings-settings"

const keyAutoFollow = "autofollow"

// DefaultAutoFollowRules are the rules before an admin sets any: record
// owners follow their records (as in Chatter); new employees do not follow
// their managers.
func DefaultAutoFollowRules() *tidingsv1.AutoFollowRules {
	return &tidingsv1.AutoFollowRules{OwnerFollowsRecord: true}
}

// Store reads and writes settings.
type Store struct {
	kv jetstream.KeyValue
}

// Open creates the bucket if needed and returns a Store. Many processes
// may open it at once on a cluster that is still forming: attempts are
// short and retried (eventlog.EnsureKeyValue) until ctx ends.
func Open(ctx context.Context, js jetstream.JetStream, replicas int) (*Store, error) {
	kv, err := eventlog.EnsureKeyValue(ctx, js, jetstream.KeyValueConfig{
		Bucket:      Bucket,
		Description: "Tidings settings changed by admins",
		History:     10,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("open settings bucket: %w", err)
	}
	return &Store{kv: kv}, nil
}

// AutoFollowRules returns the rules in force.
func (s *Store) AutoFollowRules(ctx context.Context) (*tidingsv1.AutoFollowRules, error) {
	e, err := s.kv.Get(ctx, keyAutoFollow)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return DefaultAutoFollowRules(), nil
	}
	if err != nil {
		return nil, fmt.Errorf("read auto-follow rules: %w", err)
	}
	rules := &tidingsv1.AutoFollowRules{}
	if err := proto.Unmarshal(e.Value(), rules); err != nil {
		return nil, fmt.Errorf("decode auto-follow rules: %w", err)
	}
	return rules, nil
}

// SetAutoFollowRules replaces the rules.
func (s *Store) SetAutoFollowRules(ctx context.Context, rules *tidingsv1.AutoFollowRules) error {
	data, err := proto.Marshal(rules)
	if err != nil {
		return fmt.Errorf("encode auto-follow rules: %w", err)
	}
	if _, err := s.kv.Put(ctx, keyAutoFollow, data); err != nil {
		return fmt.Errorf("write auto-follow rules: %w", err)
	}
	return nil
}
