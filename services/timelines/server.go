// Package timelines implements TimelineService: home and entity feeds.
package timelines

import (
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

// Server implements tidingsv1.TimelineServiceServer. Methods not yet built
// return Unimplemented.
type Server struct {
	tidingsv1.UnimplementedTimelineServiceServer
}

var _ tidingsv1.TimelineServiceServer = (*Server)(nil)

// NewServer returns the TimelineService.
func NewServer() *Server { return &Server{} }
