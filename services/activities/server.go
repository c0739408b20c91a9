// Package activities implements ActivityService: posts and record events.
package activities

import (
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

// Server implements tidingsv1.ActivityServiceServer. Methods not yet built
// return Unimplemented.
type Server struct {
	tidingsv1.UnimplementedActivityServiceServer
}

var _ tidingsv1.ActivityServiceServer = (*Server)(nil)

// NewServer returns the ActivityService.
func NewServer() *Server { return &Server{} }
