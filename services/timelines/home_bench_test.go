package timelines_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tidingshq/tidings/pkg/config"
	"github.com/tidingshq/tidings/pkg/entity"
	"github.com/tidingshq/tidings/pkg/testenv"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
	"github.com/tidingshq/tidings/services/stacktest"
)

// BenchmarkHomeRead reads a hydrated 50-item page of a home feed through
// the gRPC API, built through the API alone (so that it runs on any
// version of the read): a reader follows 20 authors whose 300 posts were
// pushed into a home timeline capped at 200, and 0, 5 or 20 of the 20 hot
// authors of the company (each with 20 pulled posts); past-cap reads the
// page 250 items down, below what the timeline keeps.
func BenchmarkHomeRead(b *testing.B) {
	for _, tc := range []struct {
		name string
		hot  int
		deep bool
	}{
		{"hot=0", 0, false},
		{"hot=5", 5, false},
		{"hot=20", 20, false},
		{"past-cap", 0, true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			s := stacktest.Start(b, stacktest.Options{Configure: func(c *config.Config) {
				c.HomeCap, c.HotOn, c.HotOff = 200, 3, 2
			}})
			s.StartWorker(b)
			var authors, stars, crowd []string
			for i := range 20 {
				authors = append(authors, fmt.Sprintf("author%02d", i))
				stars = append(stars, fmt.Sprintf("star%02d", i))
			}
			for i := range 4 {
				crowd = append(crowd, fmt.Sprintf("fan%d", i))
			}
			s.Users(b, append(append(append([]string{"reader"}, authors...), stars...), crowd...)...)
			ctx := b.Context()
			followAll := func(users []string, e *tidingsv1.EntityRef) {
				_, err := s.Admin(b).BulkFollow(ctx, &tidingsv1.BulkFollowRequest{Entity: e, Users: &tidingsv1.UserSelector{
					Selector: &tidingsv1.UserSelector_Users{Users: &tidingsv1.UserList{UserIds: users}}}})
				require.NoError(b, err)
			}
			for _, a := range authors {
				followAll([]string{"reader"}, entity.User(a))
			}
			for i, h := range stars {
				users := crowd
				if i < tc.hot {
					users = append([]string{"reader"}, crowd...)
				}
				followAll(users, entity.User(h))
			}
			s.WaitCaughtUp(b)
			postAs := func(u string, n int) {
				for i := range n {
					_, err := s.Activities(b, testenv.Employee(u)).PostActivity(ctx, &tidingsv1.PostActivityRequest{ActorUserId: u, Text: fmt.Sprintf("post %d by %s", i, u)})
					require.NoError(b, err)
				}
			}
			for range 15 {
				for _, a := range authors {
					postAs(a, 1)
				}
				for _, h := range stars {
					postAs(h, 1)
				}
			}
			for _, h := range stars[:5] {
				postAs(h, 5)
			}
			s.WaitCaughtUp(b)
			client := s.Timelines(b, testenv.Employee("reader"))
			req := &tidingsv1.GetHomeTimelineRequest{UserId: "reader", PageSize: 50}
			if tc.deep {
				for range 5 {
					resp, err := client.GetHomeTimeline(ctx, req)
					require.NoError(b, err)
					req.PageToken = resp.GetNextPageToken()
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				resp, err := client.GetHomeTimeline(ctx, req)
				if err != nil || len(resp.GetItems()) != 50 {
					b.Fatalf("read: %v, %d items", err, len(resp.GetItems()))
				}
			}
		})
	}
}
