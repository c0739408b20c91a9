package timelines_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/tidingshq/tidings/pkg/auth"
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
	p := s.Components.Projector().Stores()
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
		data, err := rdb.GetRange(ctx, timelinestore.HomeKey("reader"), 0, 50*8-1).Bytes()
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
