package audit

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/tidingshq/tidings/pkg/pagetoken"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

// DefaultPageSize is the page size of a request that names none.
const DefaultPageSize = 100

// ErrBadPageToken is returned for a page token made for another listing.
var ErrBadPageToken = errBadToken

// List returns one page of the audit trail, newest first (in the order the
// events were recorded), keeping the events req's filters accept. It reads
// the stream backwards from the newest event (or from where the page token
// says); start_time and end_time select by the time an event was recorded
// (just after its call finished), which the stream keeps in order. It
// reads at most maxScan events a call; a
// page cut short by that limit still carries a next page token.
func List(ctx context.Context, js jetstream.JetStream, req *tidingsv1.ListAuditEventsRequest) (*tidingsv1.ListAuditEventsResponse, error) {
	resp := &tidingsv1.ListAuditEventsResponse{}
	size := int(req.GetPageSize())
	if size == 0 {
		size = DefaultPageSize
	}
	scope := listScope(req)
	pos, err := pagetoken.Decode(scope, req.GetPageToken())
	if err != nil {
		return nil, ErrBadPageToken
	}
	st, err := js.Stream(ctx, Stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return resp, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open stream %s: %w", Stream, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("read stream %s: %w", Stream, err)
	}
	first, upper := info.State.FirstSeq, info.State.LastSeq
	if info.State.Msgs == 0 {
		return resp, nil
	}
	if pos != "" {
		after, err := strconv.ParseUint(pos, 10, 64)
		if err != nil || after == 0 {
			return nil, ErrBadPageToken
		}
		upper = min(upper, after-1)
	}
	if end := req.GetEndTime(); end != nil {
		// The first event recorded at or after end_time bounds the scan.
		endAt := end.AsTime()
		lo, hi := first, upper+1
		for lo < hi {
			mid := lo + (hi-lo)/2
			m, err := st.GetMsg(ctx, mid)
			switch {
			case errors.Is(err, jetstream.ErrMsgNotFound):
				lo = mid + 1
			case err != nil:
				return nil, fmt.Errorf("read audit event %d: %w", mid, err)
			case m.Time.Before(endAt):
				lo = mid + 1
			default:
				hi = mid
			}
		}
		if lo == first {
			return resp, nil
		}
		upper = min(upper, lo-1)
	}
	scanned := 0
	for seq := upper; seq >= first && seq > 0; seq-- {
		if scanned == maxScan || len(resp.Events) == size {
			resp.NextPageToken = pagetoken.Encode(scope, strconv.FormatUint(seq+1, 10))
			break
		}
		scanned++
		m, err := st.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read audit event %d: %w", seq, err)
		}
		e := &tidingsv1.AuditEvent{}
		if err := proto.Unmarshal(m.Data, e); err != nil {
			continue // not an event of this version; skip rather than fail the listing
		}
		e.Sequence = seq
		if start := req.GetStartTime(); start != nil && m.Time.Before(start.AsTime()) {
			break // and so was everything recorded earlier
		}
		if keep(req, e) {
			resp.Events = append(resp.Events, e)
		}
	}
	return resp, nil
}

// keep reports whether e passes the filters of req.
func keep(req *tidingsv1.ListAuditEventsRequest, e *tidingsv1.AuditEvent) bool {
	if k := req.GetCallerKind(); k != tidingsv1.CallerKind_CALLER_KIND_UNSPECIFIED && e.GetCaller().GetKind() != k {
		return false
	}
	if id := req.GetCallerId(); id != "" && e.GetCaller().GetId() != id {
		return false
	}
	if m := req.GetMethod(); m != "" {
		if strings.HasSuffix(m, "/") && !strings.HasPrefix(e.GetMethod(), m) {
			return false
		}
		if !strings.HasSuffix(m, "/") && e.GetMethod() != m {
			return false
		}
	}
	return true
}

// listScope ties a page token to the filters it was made for.
func listScope(req *tidingsv1.ListAuditEventsRequest) string {
	return strings.Join([]string{
		"audit", req.GetCallerKind().String(), req.GetCallerId(), req.GetMethod(),
		req.GetStartTime().AsTime().String(), req.GetEndTime().AsTime().String(),
	}, "|")
}
