package admin

import (
	"context"
	"errors"

	"github.com/tidingshq/tidings/pkg/apierr"
	"github.com/tidingshq/tidings/pkg/audit"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

// ListAuditEvents implements tidingsv1.AdminServiceServer: the audit trail
// that pkg/audit records from the server's interceptors, newest first.
func (s *Server) ListAuditEvents(ctx context.Context, req *tidingsv1.ListAuditEventsRequest) (*tidingsv1.ListAuditEventsResponse, error) {
	if st, end := req.GetStartTime(), req.GetEndTime(); (st != nil && st.CheckValid() != nil) || (end != nil && end.CheckValid() != nil) {
		return nil, apierr.InvalidArgument("start_time and end_time must be valid times")
	}
	resp, err := audit.List(ctx, s.d.Log.JetStream(), req)
	if errors.Is(err, audit.ErrBadPageToken) {
		return nil, apierr.InvalidArgument("page_token is not a token of this listing (the filters must not change between pages)")
	}
	if err != nil {
		return nil, err
	}
	return resp, nil
}
