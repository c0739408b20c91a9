// Package admin implements AdminService: bulk graph management, rebuilds and status.
package admin

import (
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

// Server implements tidingsv1.AdminServiceServer. Methods not yet built
// return Unimplemented.
type Server struct {
	tidingsv1.UnimplementedAdminServiceServer
}

var _ tidingsv1.AdminServiceServer = (*Server)(nil)

// NewServer returns the AdminService.
func NewServer() *Server { return &Server{} }
