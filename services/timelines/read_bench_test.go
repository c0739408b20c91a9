package timelines_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/tidingshq/tidings/pkg/auth"
	"github.com/tidingshq/tidings/pkg/conversation"
	"github.com/tidingshq/tidings/pkg/entity"
	"github.com/tidingshq/tidings/pkg/testenv"
	"github.com/tidingshq/tidings/pkg/timelinestore"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
	"github.com/tidingshq/tidings/services/stacktest"
	"github.com/tidingshq/tidings/services/timelines"
)

// benchHome builds a reader whose home timeline holds 200 activities by 20
// authors, and returns the timeline server.
func benchHome(b *testing.B) (*stacktest.Stack, *timelines.Server) {
	s := stacktest.Start(b)
	s.StartWorker(b)
	var authors []string
	for i := range 20 {
		authors = append(authors, fmt.Sprintf("author%02d", i))
	}
	s.Users(b, append(authors, "reader")...)
	for _, a := range authors {
		_, err := s.Follows(b, testenv.Admin).Follow(b.Context(), &tidingsv1.FollowRequest{UserId: "reader", Entity: entity.User(a)})
		require.NoError(b, err)
	}
	for i := range 200 {
		a := authors[i%len(authors)]
		_, err := s.Activities(b, testenv.Employee(a)).PostActivity(b.Context(), &tidingsv1.PostActivityRequest{ActorUserId: a, Text: fmt.Sprintf("post %d with some text", i)})
		require.NoError(b, err)
	}
	s.WaitCaughtUp(b)
	p := s.Stores()
	return s, timelines.NewServer(timelines.Deps{Timelines: p.Timelines, Bodies: p.Bodies, Profiles: p.Profiles, Records: p.Records})
}

// BenchmarkHomeTimelineRead reads a 50-item hydrated page of a home
// timeline, in the service (no gRPC).
func BenchmarkHomeTimelineRead(b *testing.B) {
	_, srv := benchHome(b)
	ctx := auth.WithIdentity(context.Background(), testenv.Employee("reader"))
	req := &tidingsv1.GetHomeTimelineRequest{UserId: "reader", PageSize: 50}
	b.ReportAllocs()
	for b.Loop() {
		resp, err := srv.GetHomeTimeline(ctx, req)
		if err != nil || len(resp.GetItems()) != 50 {
			b.Fatalf("read: %v, %d items", err, len(resp.GetItems()))
		}
	}
}

// BenchmarkBaselineRawRead does the same Redis reads from a plain client:
// the timeline, then the 50 bodies and the authors' profiles in one
// pipeline, with no decoding.
func BenchmarkBaselineRawRead(b *testing.B) {
	s, _ := benchHome(b)
	ctx := context.Background()
	rdb := s.Env.RDB
	b.ReportAllocs()
	for b.Loop() {
		data, err := rdb.GetRange(ctx, s.Stores().Timelines.HomeKey("reader"), 0, 50*8-1).Bytes()
		if err != nil || len(data) != 400 {
			b.Fatalf("read: %v, %d bytes", err, len(data))
		}
		_, err = rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, id := range timelinestore.Decode(data) {
				p.HGet(ctx, "tidings:act:{"+id.String()+"}", "pb")
			}
			for i := range 20 {
				p.HGet(ctx, fmt.Sprintf("tidings:profile:{author%02d}", i), "pb")
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

// benchConversations gives half of the reader's 200 activities one to
// three comments and a few reactions, and returns a server that reads
// conversations.
func benchConversations(b *testing.B) *timelines.Server {
	s, _ := benchHome(b)
	ctx := b.Context()
	resp, err := s.Timelines(b, testenv.Employee("reader")).GetHomeTimeline(ctx, &tidingsv1.GetHomeTimelineRequest{UserId: "reader", PageSize: 100})
	require.NoError(b, err)
	for i, it := range resp.GetItems() {
		if i%2 == 1 {
			continue
		}
		for j := range 1 + i%3 {
			u := fmt.Sprintf("author%02d", (i+j)%20)
			_, err := s.Conversations(b, testenv.Employee(u)).AddComment(ctx, &tidingsv1.AddCommentRequest{ActivityId: it.GetActivity().GetId(), AuthorUserId: u, Text: "a comment of a usual length, agreeing"})
			require.NoError(b, err)
		}
		for j := range i % 5 {
			u := fmt.Sprintf("author%02d", (i+j)%20)
			_, err := s.Conversations(b, testenv.Employee(u)).AddReaction(ctx, &tidingsv1.AddReactionRequest{ActivityId: it.GetActivity().GetId(), UserId: u, Kind: tidingsv1.ReactionKind_REACTION_KIND_LIKE})
			require.NoError(b, err)
		}
	}
	s.WaitCaughtUp(b)
	p := s.Stores()
	return timelines.NewServer(timelines.Deps{Timelines: p.Timelines, Bodies: p.Bodies, Profiles: p.Profiles, Records: p.Records,
		Conversations: conversation.NewViews(p.Conversations, p.UserState, p.Bodies), LastActivity: p.Conversations, HomeCap: 800})
}

// BenchmarkHomeTimelineReadViews reads a 50-item page whose items have
// comments and reactions, with the conversation fields (FULL), without
// them (BASIC), and in the latest-activity order, in the service, with the
// response marshalled and unmarshalled as gRPC would; the marshalled size
// of a page is reported as B/page.
func BenchmarkHomeTimelineReadViews(b *testing.B) {
	srv := benchConversations(b)
	ctx := auth.WithIdentity(context.Background(), testenv.Employee("reader"))
	for _, tc := range []struct {
		name string
		req  *tidingsv1.GetHomeTimelineRequest
	}{
		{"basic", &tidingsv1.GetHomeTimelineRequest{UserId: "reader", PageSize: 50, View: tidingsv1.FeedItemView_FEED_ITEM_VIEW_BASIC}},
		{"full", &tidingsv1.GetHomeTimelineRequest{UserId: "reader", PageSize: 50}},
		{"latest-activity", &tidingsv1.GetHomeTimelineRequest{UserId: "reader", PageSize: 50, Sort: tidingsv1.HomeSort_HOME_SORT_LATEST_ACTIVITY}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			size := 0
			for b.Loop() {
				resp, err := srv.GetHomeTimeline(ctx, tc.req)
				if err != nil || len(resp.GetItems()) != 50 {
					b.Fatalf("read: %v, %d items", err, len(resp.GetItems()))
				}
				// What gRPC adds on both ends: the response marshalled by
				// the server and unmarshalled by the client.
				wire, err := proto.Marshal(resp)
				if err != nil {
					b.Fatal(err)
				}
				size = len(wire)
				if err := proto.Unmarshal(wire, &tidingsv1.GetHomeTimelineResponse{}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(size), "B/page")
		})
	}
}
