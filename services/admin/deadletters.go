package admin

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tidingshq/tidings/pkg/apierr"
	"github.com/tidingshq/tidings/pkg/eventlog"
	"github.com/tidingshq/tidings/pkg/pagetoken"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

const defaultDeadLetterPage = 100

func deadLetterFilter(f *tidingsv1.DeadLetterFilter) eventlog.DeadLetterFilter {
	return eventlog.DeadLetterFilter{Stream: f.GetStream(), Consumer: f.GetConsumer(), Sequences: f.GetSequences()}
}

// deadLetterScope binds a page token to the filter that made it.
func deadLetterScope(f eventlog.DeadLetterFilter) string {
	seqs := slices.Clone(f.Sequences)
	slices.Sort(seqs)
	parts := make([]string, len(seqs))
	for i, s := range seqs {
		parts[i] = strconv.FormatUint(s, 10)
	}
	return "ListDeadLetters\x00" + f.Stream + "\x00" + f.Consumer + "\x00" + strings.Join(parts, ",")
}

// ListDeadLetters implements tidingsv1.AdminServiceServer.
func (s *Server) ListDeadLetters(ctx context.Context, req *tidingsv1.ListDeadLettersRequest) (*tidingsv1.ListDeadLettersResponse, error) {
	f := deadLetterFilter(req.GetFilter())
	scope := deadLetterScope(f)
	from := uint64(1)
	if tok := req.GetPageToken(); tok != "" {
		pos, err := pagetoken.Decode(scope, tok)
		if err != nil {
			return nil, apierr.InvalidArgument("page_token is not a token of this query")
		}
		if from, err = strconv.ParseUint(pos, 10, 64); err != nil || from == 0 {
			return nil, apierr.InvalidArgument("page_token is not a token of this query")
		}
	}
	size := int(req.GetPageSize())
	if size == 0 {
		size = defaultDeadLetterPage
	}
	dls, next, err := s.d.Log.ListDeadLetters(ctx, f, from, size)
	if err != nil {
		return nil, fmt.Errorf("list dead letters: %w", err)
	}
	resp := &tidingsv1.ListDeadLettersResponse{DeadLetters: make([]*tidingsv1.DeadLetter, len(dls))}
	for i, dl := range dls {
		resp.DeadLetters[i] = &tidingsv1.DeadLetter{
			Sequence:       dl.Seq,
			Stream:         dl.Stream,
			Consumer:       dl.Consumer,
			Subject:        dl.Subject,
			StreamSequence: dl.Sequence,
			Error:          dl.Error,
			DeadLetterTime: timestamppb.New(dl.Time),
			Deliveries:     dl.Deliveries,
			EventType:      dl.EventType,
			SizeBytes:      int64(len(dl.Data)),
		}
	}
	if next != 0 {
		resp.NextPageToken = pagetoken.Encode(scope, strconv.FormatUint(next, 10))
	}
	return resp, nil
}

// ReplayDeadLetters implements tidingsv1.AdminServiceServer.
func (s *Server) ReplayDeadLetters(ctx context.Context, req *tidingsv1.ReplayDeadLettersRequest) (*tidingsv1.ReplayDeadLettersResponse, error) {
	f := deadLetterFilter(req.GetFilter())
	matched, through, err := s.d.Log.RequestRedrive(ctx, f, caller(ctx))
	if err != nil {
		return nil, fmt.Errorf("replay dead letters: %w", err)
	}
	s.d.Logger.InfoContext(ctx, "dead letters to re-drive", "stream", f.Stream, "consumer", f.Consumer,
		"sequences", len(f.Sequences), "matched", matched, "through", through)
	return &tidingsv1.ReplayDeadLettersResponse{MatchedCount: matched, ThroughSequence: through}, nil
}
