package auth

import (
	"fmt"

	"google.golang.org/grpc/health/grpc_health_v1"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	reflectionv1alpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"

	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

// Rule says who may call one method.
type Rule struct {
	// Public methods need no token at all (health checks, reflection).
	Public bool
	// Employees may call the method (handlers then check whose data).
	Employees bool
	// Admins may call the method.
	Admins bool
	// Apps may call the method (handlers then check the namespace).
	Apps bool
	// AppRole, when set, is required of apps.
	AppRole string
}

// Allows reports whether id may call a method with this rule.
func (r Rule) Allows(id Identity) bool {
	switch id.Kind {
	case KindEmployee:
		return r.Employees
	case KindAdmin:
		return r.Admins
	case KindApp:
		return r.Apps && (r.AppRole == "" || id.HasRole(r.AppRole))
	}
	return false
}

var (
	public     = Rule{Public: true}
	everyone   = Rule{Employees: true, Admins: true, Apps: true}
	employees  = Rule{Employees: true, Admins: true}
	apps       = Rule{Apps: true, Admins: true}
	directory  = Rule{Apps: true, AppRole: RoleDirectory, Admins: true}
	adminsOnly = Rule{Admins: true}
)

// Policy maps full gRPC method names to rules. A method with no rule is
// denied to everyone.
type Policy map[string]Rule

// Lookup returns the rule of a method.
func (p Policy) Lookup(fullMethod string) (Rule, bool) {
	r, ok := p[fullMethod]
	return r, ok
}

// DefaultPolicy returns the rules of every Tidings method. A test walks every
// method of every registered service and fails if one is missing here.
func DefaultPolicy() Policy {
	return Policy{
		// Infrastructure.
		grpc_health_v1.Health_Check_FullMethodName:                             public,
		grpc_health_v1.Health_Watch_FullMethodName:                             public,
		grpc_health_v1.Health_List_FullMethodName:                              public,
		reflectionv1.ServerReflection_ServerReflectionInfo_FullMethodName:      public,
		reflectionv1alpha.ServerReflection_ServerReflectionInfo_FullMethodName: public,

		// Profiles: the HR app syncs the directory; employees edit their about-me.
		tidingsv1.ProfileService_UpsertProfile_FullMethodName:       directory,
		tidingsv1.ProfileService_BatchUpsertProfiles_FullMethodName: directory,
		tidingsv1.ProfileService_GetProfile_FullMethodName:          everyone,
		tidingsv1.ProfileService_BatchGetProfiles_FullMethodName:    everyone,
		tidingsv1.ProfileService_ListProfiles_FullMethodName:        everyone,
		tidingsv1.ProfileService_UpdateAboutMe_FullMethodName:       employees,
		tidingsv1.ProfileService_DeactivateProfile_FullMethodName:   directory,
		tidingsv1.ProfileService_ReactivateProfile_FullMethodName:   directory,

		// Follows: employees follow on their own behalf.
		tidingsv1.FollowService_Follow_FullMethodName:          employees,
		tidingsv1.FollowService_Unfollow_FullMethodName:        employees,
		tidingsv1.FollowService_ListFollowing_FullMethodName:   everyone,
		tidingsv1.FollowService_ListFollowers_FullMethodName:   everyone,
		tidingsv1.FollowService_IsFollowing_FullMethodName:     everyone,
		tidingsv1.FollowService_GetFollowCounts_FullMethodName: everyone,

		// Records: apps write their own namespace.
		tidingsv1.RecordService_UpsertRecord_FullMethodName:       apps,
		tidingsv1.RecordService_GetRecord_FullMethodName:          everyone,
		tidingsv1.RecordService_BatchGetRecords_FullMethodName:    everyone,
		tidingsv1.RecordService_ListRecords_FullMethodName:        everyone,
		tidingsv1.RecordService_DeleteRecord_FullMethodName:       apps,
		tidingsv1.RecordService_PostRecordActivity_FullMethodName: apps,

		// Activities.
		tidingsv1.ActivityService_PostActivity_FullMethodName:       employees,
		tidingsv1.ActivityService_GetActivity_FullMethodName:        everyone,
		tidingsv1.ActivityService_BatchGetActivities_FullMethodName: everyone,
		tidingsv1.ActivityService_EditActivity_FullMethodName:       employees,
		tidingsv1.ActivityService_DeleteActivity_FullMethodName:     everyone,
		// Bookmarks and mutes: an employee's own (handlers check whose).
		tidingsv1.ActivityService_BookmarkActivity_FullMethodName:   employees,
		tidingsv1.ActivityService_UnbookmarkActivity_FullMethodName: employees,
		tidingsv1.ActivityService_ListBookmarks_FullMethodName:      employees,
		tidingsv1.ActivityService_MuteActivity_FullMethodName:       employees,
		tidingsv1.ActivityService_UnmuteActivity_FullMethodName:     employees,

		// Conversations: employees comment and react as themselves; whoever
		// may see an activity reads its conversation.
		tidingsv1.ConversationService_AddComment_FullMethodName:     employees,
		tidingsv1.ConversationService_EditComment_FullMethodName:    employees,
		tidingsv1.ConversationService_DeleteComment_FullMethodName:  employees,
		tidingsv1.ConversationService_ListComments_FullMethodName:   everyone,
		tidingsv1.ConversationService_AddReaction_FullMethodName:    employees,
		tidingsv1.ConversationService_RemoveReaction_FullMethodName: employees,
		tidingsv1.ConversationService_ListReactions_FullMethodName:  everyone,

		// Notifications: an employee's own.
		tidingsv1.NotificationService_ListNotifications_FullMethodName:     employees,
		tidingsv1.NotificationService_GetUnreadCount_FullMethodName:        employees,
		tidingsv1.NotificationService_MarkNotificationsRead_FullMethodName: employees,
		tidingsv1.NotificationService_WatchNotifications_FullMethodName:    employees,

		// Timelines: a home feed is its owner's alone.
		tidingsv1.TimelineService_GetHomeTimeline_FullMethodName: employees,
		tidingsv1.TimelineService_GetEntityFeed_FullMethodName:   everyone,
		tidingsv1.TimelineService_Watch_FullMethodName:           employees,

		// Administration.
		tidingsv1.AdminService_BulkFollow_FullMethodName:            adminsOnly,
		tidingsv1.AdminService_BulkUnfollow_FullMethodName:          adminsOnly,
		tidingsv1.AdminService_ExportGraph_FullMethodName:           adminsOnly,
		tidingsv1.AdminService_ImportGraph_FullMethodName:           adminsOnly,
		tidingsv1.AdminService_RemoveUser_FullMethodName:            adminsOnly,
		tidingsv1.AdminService_GetAutoFollowRules_FullMethodName:    adminsOnly,
		tidingsv1.AdminService_UpdateAutoFollowRules_FullMethodName: adminsOnly,
		tidingsv1.AdminService_RebuildProjections_FullMethodName:    adminsOnly,
		tidingsv1.AdminService_GetRebuild_FullMethodName:            adminsOnly,
		tidingsv1.AdminService_GetSystemStatus_FullMethodName:       adminsOnly,
		tidingsv1.AdminService_ListDeadLetters_FullMethodName:       adminsOnly,
		tidingsv1.AdminService_ReplayDeadLetters_FullMethodName:     adminsOnly,
		tidingsv1.AdminService_ListAuditEvents_FullMethodName:       adminsOnly,
	}
}

// String describes the rule for error messages.
func (r Rule) String() string {
	if r.Public {
		return "public"
	}
	return fmt.Sprintf("employees=%t admins=%t apps=%t role=%q", r.Employees, r.Admins, r.Apps, r.AppRole)
}
