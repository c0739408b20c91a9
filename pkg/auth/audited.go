package auth

import (
	"strings"

	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

// adminServicePrefix starts every AdminService method.
const adminServicePrefix = "/tidings.v1.AdminService/"

// writes tells, for every method of the API, whether it changes state. A
// test fails if a method of the API is missing, so no new write escapes
// the audit trail.
var writes = map[string]bool{
	tidingsv1.ProfileService_UpsertProfile_FullMethodName:       true,
	tidingsv1.ProfileService_BatchUpsertProfiles_FullMethodName: true,
	tidingsv1.ProfileService_GetProfile_FullMethodName:          false,
	tidingsv1.ProfileService_BatchGetProfiles_FullMethodName:    false,
	tidingsv1.ProfileService_ListProfiles_FullMethodName:        false,
	tidingsv1.ProfileService_UpdateAboutMe_FullMethodName:       true,
	tidingsv1.ProfileService_DeactivateProfile_FullMethodName:   true,
	tidingsv1.ProfileService_ReactivateProfile_FullMethodName:   true,

	tidingsv1.FollowService_Follow_FullMethodName:          true,
	tidingsv1.FollowService_Unfollow_FullMethodName:        true,
	tidingsv1.FollowService_ListFollowing_FullMethodName:   false,
	tidingsv1.FollowService_ListFollowers_FullMethodName:   false,
	tidingsv1.FollowService_IsFollowing_FullMethodName:     false,
	tidingsv1.FollowService_GetFollowCounts_FullMethodName: false,

	tidingsv1.RecordService_UpsertRecord_FullMethodName:       true,
	tidingsv1.RecordService_GetRecord_FullMethodName:          false,
	tidingsv1.RecordService_BatchGetRecords_FullMethodName:    false,
	tidingsv1.RecordService_ListRecords_FullMethodName:        false,
	tidingsv1.RecordService_DeleteRecord_FullMethodName:       true,
	tidingsv1.RecordService_PostRecordActivity_FullMethodName: true,

	tidingsv1.ActivityService_PostActivity_FullMethodName:       true,
	tidingsv1.ActivityService_GetActivity_FullMethodName:        false,
	tidingsv1.ActivityService_BatchGetActivities_FullMethodName: false,
	tidingsv1.ActivityService_EditActivity_FullMethodName:       true,
	tidingsv1.ActivityService_DeleteActivity_FullMethodName:     true,
	tidingsv1.ActivityService_BookmarkActivity_FullMethodName:   true,
	tidingsv1.ActivityService_UnbookmarkActivity_FullMethodName: true,
	tidingsv1.ActivityService_ListBookmarks_FullMethodName:      false,
	tidingsv1.ActivityService_MuteActivity_FullMethodName:       true,
	tidingsv1.ActivityService_UnmuteActivity_FullMethodName:     true,

	tidingsv1.ConversationService_AddComment_FullMethodName:     true,
	tidingsv1.ConversationService_EditComment_FullMethodName:    true,
	tidingsv1.ConversationService_DeleteComment_FullMethodName:  true,
	tidingsv1.ConversationService_ListComments_FullMethodName:   false,
	tidingsv1.ConversationService_AddReaction_FullMethodName:    true,
	tidingsv1.ConversationService_RemoveReaction_FullMethodName: true,
	tidingsv1.ConversationService_ListReactions_FullMethodName:  false,

	tidingsv1.NotificationService_ListNotifications_FullMethodName:     false,
	tidingsv1.NotificationService_GetUnreadCount_FullMethodName:        false,
	tidingsv1.NotificationService_MarkNotificationsRead_FullMethodName: true,
	tidingsv1.NotificationService_WatchNotifications_FullMethodName:    false,

	tidingsv1.TimelineService_GetHomeTimeline_FullMethodName: false,
	tidingsv1.TimelineService_GetEntityFeed_FullMethodName:   false,
	tidingsv1.TimelineService_Watch_FullMethodName:           false,

	tidingsv1.AdminService_BulkFollow_FullMethodName:            true,
	tidingsv1.AdminService_BulkUnfollow_FullMethodName:          true,
	tidingsv1.AdminService_ExportGraph_FullMethodName:           false,
	tidingsv1.AdminService_ImportGraph_FullMethodName:           true,
	tidingsv1.AdminService_RemoveUser_FullMethodName:            true,
	tidingsv1.AdminService_GetAutoFollowRules_FullMethodName:    false,
	tidingsv1.AdminService_UpdateAutoFollowRules_FullMethodName: true,
	tidingsv1.AdminService_RebuildProjections_FullMethodName:    true,
	tidingsv1.AdminService_GetRebuild_FullMethodName:            false,
	tidingsv1.AdminService_GetSystemStatus_FullMethodName:       false,
	tidingsv1.AdminService_ListAuditEvents_FullMethodName:       false,
	tidingsv1.AdminService_ListDeadLetters_FullMethodName:       false,
	tidingsv1.AdminService_ReplayDeadLetters_FullMethodName:     true,
}

// IsWrite reports whether a method changes state, and whether the method
// is classified at all.
func IsWrite(fullMethod string) (write, known bool) {
	write, known = writes[fullMethod]
	return write, known
}

// Audited reports whether a call by id to fullMethod goes into the audit
// trail: every AdminService call (reads included: an export is an admin
// action), and every write by an app or an admin. Employees' own posts and
// follows are not audited; the event log already records them.
func Audited(fullMethod string, id Identity) bool {
	if strings.HasPrefix(fullMethod, adminServicePrefix) {
		return true
	}
	if id.Kind != KindApp && id.Kind != KindAdmin {
		return false
	}
	write, known := writes[fullMethod]
	// A method nobody classified is audited rather than missed.
	return write || (!known && strings.HasPrefix(fullMethod, "/tidings."))
}
