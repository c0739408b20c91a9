package notifications

import (
	"strconv"

	"github.com/tidingshq/tidings/pkg/notificationstore"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

// summary writes the sentence people read: "Ana Lima and 3 others liked
// your post".
func summary(it notificationstore.Item, n *tidingsv1.Notification) string {
	who := names(it, n)
	switch it.Kind {
	case tidingsv1.NotificationKind_NOTIFICATION_KIND_MENTION:
		if n.GetCommentId() != "" && it.Count == 1 {
			return who + " mentioned you in a comment"
		}
		return who + " mentioned you"
	case tidingsv1.NotificationKind_NOTIFICATION_KIND_COMMENT:
		return who + " commented on your post"
	case tidingsv1.NotificationKind_NOTIFICATION_KIND_REPLY:
		return who + " commented on a post you commented on"
	case tidingsv1.NotificationKind_NOTIFICATION_KIND_REACTION:
		verb := "reacted to"
		if it.Count == 1 && it.Object == "LIKE" {
			verb = "liked"
		}
		if n.GetCommentId() != "" {
			return who + " " + verb + " your comment"
		}
		return who + " " + verb + " your post"
	case tidingsv1.NotificationKind_NOTIFICATION_KIND_FOLLOW:
		return who + " followed you"
	case tidingsv1.NotificationKind_NOTIFICATION_KIND_RECORD_ACTIVITY:
		title := n.GetRecord().GetTitle()
		if title == "" {
			title = "your record"
		}
		return who + " posted on " + title
	}
	return who
}

// names names the newest actor, and the second or how many others.
func names(it notificationstore.Item, n *tidingsv1.Notification) string {
	name := func(i int) string {
		c := n.GetActors()[i]
		for _, p := range n.GetActorProfiles() {
			if p.GetUserId() == c.GetId() && c.GetKind() == tidingsv1.CallerKind_CALLER_KIND_EMPLOYEE && p.GetDisplayName() != "" {
				return p.GetDisplayName()
			}
		}
		return c.GetId()
	}
	switch {
	case len(n.GetActors()) == 0:
		return "Someone"
	case it.Count <= 1:
		return name(0)
	case it.Count == 2 && len(n.GetActors()) >= 2:
		return name(0) + " and " + name(1)
	case it.Count == 2:
		return name(0) + " and 1 other"
	}
	return name(0) + " and " + strconv.FormatInt(it.Count-1, 10) + " others"
}
