// Package records implements RecordService: business records brought by internal apps.
package records

import (
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

// Server implements tidingsv1.RecordServiceServer. Methods not yet built
// return Unimplemented.
type Server struct {
	tidingsv1.UnimplementedRecordServiceServer
}

var _ tidingsv1.RecordServiceServer = (*Server)(nil)

// NewServer returns the RecordService.
func NewServer() *Server { return &Server{} }
