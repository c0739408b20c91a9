// Package follows implements FollowService: the follow graph (implemented by the follow-graph work).
package follows

import (
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

// Server implements tidingsv1.FollowServiceServer. Methods not yet built
// return Unimplemented.
type Server struct {
	tidingsv1.UnimplementedFollowServiceServer
}

var _ tidingsv1.FollowServiceServer = (*Server)(nil)

// NewServer returns the FollowService.
func NewServer() *Server { return &Server{} }
