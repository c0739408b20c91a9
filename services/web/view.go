package web

import (
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

// itemView is one feed item as the templates show it. static/app.js builds
// the same markup for items that arrive live; keep the two alike.
type itemView struct {
	ID          string
	ActorName   string
	ActorHref   string
	Initials    string
	Verb        string
	RecordTitle string
	RecordHref  string
	TimeISO     string
	TimeText    string
	Edited      bool
	Text        []segment
	Changes     []*tidingsv1.FieldChange
	Links       []linkView
	// The conversation: counts, the newest comments, whether the reader
	// likes it; CSRF (set for employees) shows the like and comment forms.
	CommentCount int64
	Reactions    string
	Liked        bool
	Comments     []commentView
	CSRF         string
	// Back is the page the forms return to.
	Back string
}

// commentView is a comment as an item shows it.
type commentView struct {
	Author     string
	AuthorHref string
	Text       []segment
}

// segment is a run of text, a link when Href is set.
type segment struct {
	Text string
	Href string
}

// linkView is a link of an activity; only http and https URLs are links.
type linkView struct {
	Title string
	URL   string
	Safe  bool
}

// safeURL reports whether u may be rendered as a link: absolute http or
// https with a host. Everything else (javascript:, data:, relative) is
// shown as text.
func safeURL(u string) bool {
	p, err := url.Parse(u)
	return err == nil && (p.Scheme == "http" || p.Scheme == "https") && p.Host != ""
}

func personHref(id string) string { return "/people/" + url.PathEscape(id) }

func recordHref(r *tidingsv1.RecordRef) string {
	return "/records/" + url.PathEscape(r.GetType()) + "/" + url.PathEscape(r.GetExternalId())
}

func initials(name string) string {
	var out []rune
	for _, f := range strings.Fields(name) {
		for _, r := range f {
			out = append(out, r)
			break
		}
		if len(out) == 2 {
			break
		}
	}
	return strings.ToUpper(string(out))
}

var (
	mentionRE = regexp.MustCompile(`@[A-Za-z0-9][A-Za-z0-9._@-]{0,63}`)
	urlRE     = regexp.MustCompile(`https?://[^\s<>"']+`)
)

// segments splits text into plain runs, @mentions of the given users
// (links to their pages) and http(s) URLs (links).
func segments(text string, mentions []string) []segment {
	type match struct {
		start, end int
		href       string
	}
	var ms []match
	for _, loc := range urlRE.FindAllStringIndex(text, -1) {
		u := strings.TrimRight(text[loc[0]:loc[1]], ".,;:!?)")
		if safeURL(u) {
			ms = append(ms, match{loc[0], loc[0] + len(u), u})
		}
	}
	for _, loc := range mentionRE.FindAllStringIndex(text, -1) {
		id := strings.TrimRight(text[loc[0]+1:loc[1]], ".")
		if !slices.Contains(mentions, id) {
			continue
		}
		inURL := slices.ContainsFunc(ms, func(m match) bool { return loc[0] < m.end && loc[1] > m.start })
		if !inURL {
			ms = append(ms, match{loc[0], loc[0] + 1 + len(id), personHref(id)})
		}
	}
	slices.SortFunc(ms, func(a, b match) int { return a.start - b.start })
	var out []segment
	pos := 0
	for _, m := range ms {
		if m.start < pos {
			continue
		}
		if m.start > pos {
			out = append(out, segment{Text: text[pos:m.start]})
		}
		out = append(out, segment{Text: text[m.start:m.end], Href: m.href})
		pos = m.end
	}
	if pos < len(text) {
		out = append(out, segment{Text: text[pos:]})
	}
	return out
}

func timeText(t time.Time, now time.Time) string {
	d := now.Sub(t)
	switch {
	case d < time.Minute:
		return "just now"
	case d < time.Hour:
		return plural(int(d.Minutes()), "minute") + " ago"
	case d < 24*time.Hour:
		return plural(int(d.Hours()), "hour") + " ago"
	}
	return t.Format("2 Jan 2006")
}

func plural(n int, word string) string {
	s := strconv.Itoa(n) + " " + word
	if n != 1 {
		s += "s"
	}
	return s
}

func itemOf(it *tidingsv1.FeedItem, now time.Time) itemView {
	a := it.GetActivity()
	v := itemView{ID: a.GetId(), Verb: strings.ReplaceAll(a.GetVerb(), "_", " "), Edited: a.GetEditTime() != nil, Changes: a.GetFieldChanges()}
	if p := it.GetActorProfile(); p != nil {
		v.ActorName, v.ActorHref = p.GetDisplayName(), personHref(p.GetUserId())
	} else if a.GetActor().GetKind() == tidingsv1.CallerKind_CALLER_KIND_EMPLOYEE {
		v.ActorName, v.ActorHref = a.GetActor().GetId(), personHref(a.GetActor().GetId())
	} else {
		v.ActorName = a.GetActor().GetId()
	}
	v.Initials = initials(v.ActorName)
	if r := it.GetRecord(); r != nil {
		v.RecordTitle, v.RecordHref = r.GetTitle(), recordHref(r.GetRef())
	} else if a.GetRecord() != nil {
		v.RecordTitle, v.RecordHref = a.GetRecord().GetType()+"/"+a.GetRecord().GetExternalId(), recordHref(a.GetRecord())
	}
	if t := a.GetCreateTime(); t != nil {
		v.TimeISO, v.TimeText = t.AsTime().UTC().Format(time.RFC3339), timeText(t.AsTime(), now)
	}
	v.Text = segments(a.GetText(), a.GetMentionUserIds())
	for _, l := range a.GetLinks() {
		title := l.GetTitle()
		if title == "" {
			title = l.GetUrl()
		}
		v.Links = append(v.Links, linkView{Title: title, URL: l.GetUrl(), Safe: safeURL(l.GetUrl())})
	}
	return v
}

// conversationOf fills an item's conversation; csrf (an employee's) shows
// the forms.
func (v *itemView) conversationOf(c *tidingsv1.Conversation, csrf string) {
	v.CSRF = csrf
	v.CommentCount = c.GetCommentCount()
	var parts []string
	for _, r := range c.GetReactionCounts() {
		word := strings.ToLower(strings.TrimPrefix(r.GetKind().String(), "REACTION_KIND_"))
		if r.GetKind() == tidingsv1.ReactionKind_REACTION_KIND_LIKE {
			word = "like"
			if r.GetCount() != 1 {
				word = "likes"
			}
		}
		parts = append(parts, strconv.FormatInt(r.GetCount(), 10)+" "+word)
	}
	v.Reactions = strings.Join(parts, " · ")
	v.Liked = slices.Contains(c.GetMyReactions(), tidingsv1.ReactionKind_REACTION_KIND_LIKE)
	for _, cv := range c.GetRecentComments() {
		cm := cv.GetComment()
		name := cm.GetAuthorUserId()
		if p := cv.GetAuthorProfile(); p.GetDisplayName() != "" {
			name = p.GetDisplayName()
		}
		v.Comments = append(v.Comments, commentView{Author: name, AuthorHref: personHref(cm.GetAuthorUserId()), Text: segments(cm.GetText(), cm.GetMentionUserIds())})
	}
}

// itemsOf builds the views of feed items for a reader; csrf (an
// employee's) shows the like and comment forms, which return to back.
func itemsOf(items []*tidingsv1.FeedItem, csrf, back string) []itemView {
	now := time.Now()
	out := make([]itemView, 0, len(items))
	for _, it := range items {
		v := itemOf(it, now)
		v.conversationOf(it.GetConversation(), csrf)
		v.Back = back
		out = append(out, v)
	}
	return out
}
