package stack

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tidingshq/tidings/pkg/auth"
	"github.com/tidingshq/tidings/pkg/entity"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

// demoPeople is the small directory `tidings dev` starts with, so that the
// web page's sign-in picker has people to offer.
var demoPeople = []*tidingsv1.Profile{
	{UserId: "ana", DisplayName: "Ana Lima", Title: "Account Executive", Department: "Sales", Location: "Lisbon", Email: "ana@example.com"},
	{UserId: "bo", DisplayName: "Bo Chen", Title: "Sales Engineer", Department: "Sales", ManagerId: "ana", Location: "Singapore", Email: "bo@example.com"},
	{UserId: "cy", DisplayName: "Cy Okafor", Title: "Support Lead", Department: "Support", Location: "Lagos", Email: "cy@example.com"},
	{UserId: "dee", DisplayName: "Dee Park", Title: "Engineering Manager", Department: "Engineering", Location: "Seoul", Email: "dee@example.com"},
	{UserId: "eli", DisplayName: "Eli Novak", Title: "Financial Analyst", Department: "Finance", Location: "Prague", Email: "eli@example.com"},
}

// seedDemo fills an empty directory with demoPeople, a few follows, a
// public and a restricted record and a first post, through the API as an
// admin. A directory with anyone in it is left alone.
func seedDemo(ctx context.Context, grpcAddr, adminToken string, mint func(auth.Kind, string) (string, error)) error {
	conn, err := grpc.NewClient(loopback(grpcAddr),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(auth.PerRPCToken(adminToken)))
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	profiles := tidingsv1.NewProfileServiceClient(conn)
	list, err := profiles.ListProfiles(ctx, &tidingsv1.ListProfilesRequest{PageSize: 1, IncludeInactive: true})
	if err != nil {
		return fmt.Errorf("list profiles: %w", err)
	}
	if len(list.GetProfiles()) > 0 {
		return nil
	}
	if _, err := profiles.BatchUpsertProfiles(ctx, &tidingsv1.BatchUpsertProfilesRequest{Profiles: demoPeople}); err != nil {
		return fmt.Errorf("upsert demo profiles: %w", err)
	}
	if _, err := profiles.UpdateAboutMe(ctx, &tidingsv1.UpdateAboutMeRequest{UserId: "ana", AboutMe: "I look after our largest accounts in Southern Europe."}); err != nil {
		return fmt.Errorf("about me: %w", err)
	}
	records := tidingsv1.NewRecordServiceClient(conn)
	acme := &tidingsv1.RecordRef{Type: "crm.opportunity", ExternalId: "ACME-500"}
	incident := &tidingsv1.RecordRef{Type: "support.incident", ExternalId: "INC-4411"}
	for _, r := range []*tidingsv1.Record{
		{Ref: acme, Title: "Acme Corp — 500 seats", OwnerId: "ana", Url: "https://crm.example.com/opportunities/ACME-500",
			Attributes: map[string]string{"Stage": "Negotiation", "Amount": "€240,000"}},
		{Ref: incident, Title: "Checkout latency in EU", OwnerId: "cy", Visibility: tidingsv1.Visibility_VISIBILITY_RESTRICTED,
			ReaderIds: []string{"cy", "dee"}},
	} {
		if _, err := records.UpsertRecord(ctx, &tidingsv1.UpsertRecordRequest{Record: r}); err != nil {
			return fmt.Errorf("upsert demo record: %w", err)
		}
	}
	follows := tidingsv1.NewFollowServiceClient(conn)
	for _, f := range [][2]string{{"bo", "ana"}, {"ana", "bo"}, {"cy", "ana"}, {"dee", "cy"}, {"eli", "ana"}} {
		if _, err := follows.Follow(ctx, &tidingsv1.FollowRequest{UserId: f[0], Entity: entity.User(f[1])}); err != nil {
			return fmt.Errorf("demo follow: %w", err)
		}
	}
	if _, err := tidingsv1.NewActivityServiceClient(conn).PostActivity(ctx, &tidingsv1.PostActivityRequest{
		ActorUserId: "ana", Text: "Kicking off the Acme renewal this week. @bo, can you prepare the demo?", IdempotencyKey: "demo-1",
	}); err != nil {
		return fmt.Errorf("demo post: %w", err)
	}
	crmToken, err := mint(auth.KindApp, "crm")
	if err != nil {
		return err
	}
	crmConn, err := grpc.NewClient(loopback(grpcAddr),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(auth.PerRPCToken(crmToken)))
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer crmConn.Close()
	if _, err := tidingsv1.NewRecordServiceClient(crmConn).PostRecordActivity(ctx, &tidingsv1.PostRecordActivityRequest{
		Ref: acme, EventId: "demo-stage-1", Verb: "stage_changed", Text: "Stage changed", OnBehalfOf: "ana",
		FieldChanges: []*tidingsv1.FieldChange{{Field: "Stage", OldValue: "Proposal", NewValue: "Negotiation"}},
	}); err != nil {
		return fmt.Errorf("demo record event: %w", err)
	}
	return nil
}
