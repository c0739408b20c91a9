package web

import (
	"bytes"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tidingshq/tidings/pkg/auth"
	"github.com/tidingshq/tidings/pkg/entity"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

// page is what every template gets.
type page struct {
	Title string
	Nav   string
	Me    *session
	// Data is the page's own.
	Data any
}

func parseTemplates() (map[string]*template.Template, error) {
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	pages := map[string]*template.Template{}
	for _, n := range names {
		base := path.Base(n)
		if base == "layout.html" || strings.HasPrefix(base, "_") {
			continue
		}
		t, err := template.New("layout.html").Funcs(template.FuncMap{"recordHref": recordHref}).ParseFS(templateFS, "templates/layout.html", "templates/_*.html", n)
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", n, err)
		}
		pages[strings.TrimSuffix(base, ".html")] = t
	}
	return pages, nil
}

func (s *Server) render(w http.ResponseWriter, code int, name string, p page) {
	var buf bytes.Buffer
	if err := s.pages[name].Execute(&buf, p); err != nil {
		s.log.Error("render page", "page", name, "error", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(buf.Bytes())
}

// fail shows an error page; an API error with Unauthenticated sends the
// caller to sign in again.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, sess *session, code int, msg string) {
	s.render(w, code, "error", page{Title: http.StatusText(code), Me: sess, Data: msg})
}

func (s *Server) apiFail(w http.ResponseWriter, r *http.Request, sess *session, err error) {
	st, _ := status.FromError(err)
	switch st.Code() {
	case codes.Unauthenticated:
		s.clearSession(w, r)
		http.Redirect(w, r, "/signin", http.StatusSeeOther)
	case codes.NotFound:
		s.fail(w, r, sess, http.StatusNotFound, "There is nothing here, or you may not see it.")
	case codes.PermissionDenied:
		s.fail(w, r, sess, http.StatusForbidden, "You may not see this page.")
	case codes.InvalidArgument:
		s.fail(w, r, sess, http.StatusBadRequest, st.Message())
	default:
		s.log.Warn("web: api call failed", "path", r.URL.Path, "error", err)
		s.fail(w, r, sess, http.StatusBadGateway, "Tidings could not answer just now. Try again in a moment.")
	}
}

// Sign-in.

type signInData struct {
	Dev    bool
	People []*tidingsv1.Profile
	Next   string
	Error  string
}

func (s *Server) signInPage(w http.ResponseWriter, r *http.Request) {
	d := signInData{Dev: s.opts.DevTokens != nil, Next: safeNext(r.URL.Query().Get("next"))}
	if d.Dev {
		tok, err := s.opts.DevTokens(auth.KindAdmin, "web-signin")
		if err == nil {
			ctx, cancel := callCtx(r)
			defer cancel()
			resp, err := tidingsv1.NewProfileServiceClient(s.opts.Conn).ListProfiles(ctx, //nolint:contextcheck // ctx derives from the request's
				&tidingsv1.ListProfilesRequest{PageSize: 200}, s.creds(&session{Token: tok}))
			if err != nil {
				d.Error = "The directory could not be read: " + status.Convert(err).Message()
			} else {
				d.People = resp.GetProfiles()
			}
		}
	}
	s.render(w, http.StatusOK, "signin", page{Title: "Sign in", Data: d})
}

func (s *Server) signIn(w http.ResponseWriter, r *http.Request) {
	// Sign-in forms carry no session yet; SameSite=Strict cookies and the
	// origin check keep other sites from signing a browser in.
	if origin := r.Header.Get("Origin"); origin != "" && !strings.HasSuffix(origin, "//"+r.Host) {
		s.fail(w, r, nil, http.StatusForbidden, "Sign in from this site.")
		return
	}
	next := safeNext(r.PostFormValue("next"))
	var token string
	switch {
	case s.opts.DevTokens != nil && r.PostFormValue("user") != "":
		kind := auth.KindEmployee
		if r.URL.Query().Get("kind") == "admin" {
			kind = auth.KindAdmin
		}
		t, err := s.opts.DevTokens(kind, r.PostFormValue("user"))
		if err != nil {
			s.fail(w, r, nil, http.StatusBadRequest, "That user cannot sign in.")
			return
		}
		token = t
	case r.PostFormValue("token") != "":
		token = strings.TrimSpace(r.PostFormValue("token"))
	default:
		http.Redirect(w, r, "/signin", http.StatusSeeOther)
		return
	}
	s.setSession(w, r, token, 12*time.Hour)
	http.Redirect(w, r, next, http.StatusSeeOther) //nolint:gosec // G710: next passed safeNext (a local path)
}

func (s *Server) signOut(w http.ResponseWriter, r *http.Request) {
	if sess, ok := s.sessionOf(r); ok && !s.checkCSRF(r, sess) {
		s.fail(w, r, sess, http.StatusForbidden, "This form expired. Reload and try again.")
		return
	}
	s.clearSession(w, r)
	http.Redirect(w, r, "/signin", http.StatusSeeOther)
}

// Home.

type homeData struct {
	Profile  *tidingsv1.Profile
	Items    []itemView
	Newest   string
	Records  []*tidingsv1.Record
	Employee bool
}

func (s *Server) home(w http.ResponseWriter, r *http.Request, sess *session) {
	ctx, cancel := callCtx(r)
	defer cancel()
	d := homeData{Employee: sess.ID.Kind == auth.KindEmployee}
	if !d.Employee {
		http.Redirect(w, r, "/admin", http.StatusSeeOther)
		return
	}
	me := sess.ID.ID
	tl, err := tidingsv1.NewTimelineServiceClient(s.opts.Conn).GetHomeTimeline(ctx,
		&tidingsv1.GetHomeTimelineRequest{UserId: me, PageSize: 30}, s.creds(sess))
	if err != nil {
		s.apiFail(w, r, sess, err)
		return
	}
	d.Items = itemsOf(tl.GetItems(), sess.CSRF, "/")
	if len(d.Items) > 0 {
		d.Newest = d.Items[0].ID
	}
	if p, err := tidingsv1.NewProfileServiceClient(s.opts.Conn).GetProfile(ctx, &tidingsv1.GetProfileRequest{UserId: me}, s.creds(sess)); err == nil {
		d.Profile = p.GetProfile()
	}
	d.Records = s.followedRecords(r, sess, me)
	s.render(w, http.StatusOK, "home", page{Title: "Home", Nav: "home", Me: sess, Data: d})
}

// followedRecords returns the records the user follows, for the composer's
// "about" choice.
func (s *Server) followedRecords(r *http.Request, sess *session, user string) []*tidingsv1.Record {
	ctx, cancel := callCtx(r)
	defer cancel()
	fl, err := tidingsv1.NewFollowServiceClient(s.opts.Conn).ListFollowing(ctx, &tidingsv1.ListFollowingRequest{
		UserId: user, Kind: tidingsv1.EntityKind_ENTITY_KIND_RECORD, PageSize: 100}, s.creds(sess))
	if err != nil || len(fl.GetFollows()) == 0 {
		return nil
	}
	var refs []*tidingsv1.RecordRef
	for _, f := range fl.GetFollows() {
		refs = append(refs, f.GetEntity().GetRecord())
	}
	recs, err := tidingsv1.NewRecordServiceClient(s.opts.Conn).BatchGetRecords(ctx, &tidingsv1.BatchGetRecordsRequest{Refs: refs}, s.creds(sess))
	if err != nil {
		return nil
	}
	return recs.GetRecords()
}

// compose posts from the plain form (without JavaScript); the script posts
// through the JSON API instead.
func (s *Server) compose(w http.ResponseWriter, r *http.Request, sess *session) {
	ctx, cancel := callCtx(r)
	defer cancel()
	req := &tidingsv1.PostActivityRequest{ActorUserId: sess.ID.ID, Text: r.PostFormValue("text")}
	if u := strings.TrimSpace(r.PostFormValue("link_url")); u != "" {
		req.Links = []*tidingsv1.Link{{Url: u, Title: strings.TrimSpace(r.PostFormValue("link_title"))}}
	}
	if rec := r.PostFormValue("record"); rec != "" {
		typ, id, ok := strings.Cut(rec, "/")
		if ok {
			req.Record = &tidingsv1.RecordRef{Type: typ, ExternalId: id}
		}
	}
	if _, err := tidingsv1.NewActivityServiceClient(s.opts.Conn).PostActivity(ctx, req, s.creds(sess)); err != nil {
		s.apiFail(w, r, sess, err)
		return
	}
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// People.

type personRef struct {
	Name, Href, Initials, Title string
}

type personData struct {
	Profile        *tidingsv1.Profile
	Self           bool
	CanFollow      bool
	Following      bool
	FollowerCount  int64
	FollowingCount int64
	Items          []itemView
	Followers      []personRef
	Follows        []personRef
	Initials       string
	FollowPath     string
	Entity         string
	CSRF           string
}

func (s *Server) people(w http.ResponseWriter, r *http.Request, sess *session) {
	ctx, cancel := callCtx(r)
	defer cancel()
	resp, err := tidingsv1.NewProfileServiceClient(s.opts.Conn).ListProfiles(ctx, &tidingsv1.ListProfilesRequest{PageSize: 200}, s.creds(sess))
	if err != nil {
		s.apiFail(w, r, sess, err)
		return
	}
	var list []personRef
	for _, p := range resp.GetProfiles() {
		list = append(list, personRef{Name: p.GetDisplayName(), Href: personHref(p.GetUserId()), Initials: initials(p.GetDisplayName()), Title: strings.TrimSpace(p.GetTitle() + " · " + p.GetDepartment())})
	}
	s.render(w, http.StatusOK, "people", page{Title: "People", Nav: "people", Me: sess, Data: list})
}

func (s *Server) person(w http.ResponseWriter, r *http.Request, sess *session) {
	id := r.PathValue("id")
	ctx, cancel := callCtx(r)
	defer cancel()
	c := s.opts.Conn
	p, err := tidingsv1.NewProfileServiceClient(c).GetProfile(ctx, &tidingsv1.GetProfileRequest{UserId: id}, s.creds(sess))
	if err != nil {
		s.apiFail(w, r, sess, err)
		return
	}
	ref := entity.User(id)
	d := personData{Profile: p.GetProfile(), Self: sess.ID.Kind == auth.KindEmployee && sess.ID.ID == id,
		Initials: initials(p.GetProfile().GetDisplayName()), FollowPath: personHref(id) + "/follow", Entity: "user:" + id, CSRF: sess.CSRF}
	d.CanFollow = sess.ID.Kind == auth.KindEmployee && !d.Self
	if err := s.entityPage(r, sess, ref, &d.Items, &d.Following, &d.FollowerCount, &d.Followers, d.CanFollow); err != nil {
		s.apiFail(w, r, sess, err)
		return
	}
	fc, err := tidingsv1.NewFollowServiceClient(c).GetFollowCounts(ctx, &tidingsv1.GetFollowCountsRequest{Entity: ref}, s.creds(sess))
	if err == nil {
		d.FollowingCount = fc.GetFollowingCount()
	}
	if fl, err := tidingsv1.NewFollowServiceClient(c).ListFollowing(ctx, &tidingsv1.ListFollowingRequest{UserId: id, PageSize: 20}, s.creds(sess)); err == nil {
		d.Follows = s.refsOf(r, sess, fl.GetFollows(), func(f *tidingsv1.Follow) *tidingsv1.EntityRef { return f.GetEntity() })
	}
	s.render(w, http.StatusOK, "person", page{Title: d.Profile.GetDisplayName(), Nav: navFor(d.Self), Me: sess, Data: d})
}

func navFor(self bool) string {
	if self {
		return "me"
	}
	return "people"
}

// entityPage reads what a person's and a record's pages share: the feed,
// whether the caller follows, and the followers.
func (s *Server) entityPage(r *http.Request, sess *session, ref *tidingsv1.EntityRef, items *[]itemView, following *bool, count *int64, followers *[]personRef, askFollowing bool) error {
	ctx, cancel := callCtx(r)
	defer cancel()
	c := s.opts.Conn
	feed, err := tidingsv1.NewTimelineServiceClient(c).GetEntityFeed(ctx, &tidingsv1.GetEntityFeedRequest{Entity: ref, PageSize: 30}, s.creds(sess))
	if err != nil {
		return err
	}
	back := personHref(ref.GetUserId())
	if rec := ref.GetRecord(); rec != nil {
		back = recordHref(rec)
	}
	*items = itemsOf(feed.GetItems(), employeeCSRF(sess), back)
	if askFollowing {
		f, err := tidingsv1.NewFollowServiceClient(c).IsFollowing(ctx, &tidingsv1.IsFollowingRequest{UserId: sess.ID.ID, Entities: []*tidingsv1.EntityRef{ref}}, s.creds(sess))
		if err != nil {
			return err
		}
		*following = len(f.GetFollowing()) == 1 && f.GetFollowing()[0]
	}
	fl, err := tidingsv1.NewFollowServiceClient(c).ListFollowers(ctx, &tidingsv1.ListFollowersRequest{Entity: ref, PageSize: 20}, s.creds(sess))
	if err != nil {
		return err
	}
	*count = fl.GetTotalCount()
	*followers = s.refsOf(r, sess, fl.GetFollows(), func(f *tidingsv1.Follow) *tidingsv1.EntityRef { return entity.User(f.GetUserId()) })
	return nil
}

// refsOf names the entities of follow edges, with their profiles' and
// records' titles.
func (s *Server) refsOf(r *http.Request, sess *session, follows []*tidingsv1.Follow, pick func(*tidingsv1.Follow) *tidingsv1.EntityRef) []personRef {
	ctx, cancel := callCtx(r)
	defer cancel()
	var users []string
	var recs []*tidingsv1.RecordRef
	for _, f := range follows {
		e := pick(f)
		if e.GetUserId() != "" {
			users = append(users, e.GetUserId())
		} else if e.GetRecord() != nil {
			recs = append(recs, e.GetRecord())
		}
	}
	names := map[string]*tidingsv1.Profile{}
	if len(users) > 0 {
		if resp, err := tidingsv1.NewProfileServiceClient(s.opts.Conn).BatchGetProfiles(ctx, &tidingsv1.BatchGetProfilesRequest{UserIds: users}, s.creds(sess)); err == nil {
			for _, p := range resp.GetProfiles() {
				names[p.GetUserId()] = p
			}
		}
	}
	titles := map[string]string{}
	if len(recs) > 0 {
		if resp, err := tidingsv1.NewRecordServiceClient(s.opts.Conn).BatchGetRecords(ctx, &tidingsv1.BatchGetRecordsRequest{Refs: recs}, s.creds(sess)); err == nil {
			for _, rec := range resp.GetRecords() {
				titles[entity.RecordKey(rec.GetRef())] = rec.GetTitle()
			}
		}
	}
	var out []personRef
	for _, f := range follows {
		e := pick(f)
		switch {
		case e.GetUserId() != "":
			name, title := e.GetUserId(), ""
			if p := names[e.GetUserId()]; p != nil {
				name, title = p.GetDisplayName(), p.GetTitle()
			}
			out = append(out, personRef{Name: name, Href: personHref(e.GetUserId()), Initials: initials(name), Title: title})
		case e.GetRecord() != nil:
			title, ok := titles[entity.RecordKey(e.GetRecord())]
			if !ok {
				continue // not visible to the caller
			}
			out = append(out, personRef{Name: title, Href: recordHref(e.GetRecord()), Initials: "#", Title: e.GetRecord().GetType()})
		}
	}
	return out
}

// followForm follows or unfollows from the plain form (without
// JavaScript); the script uses the JSON API.
func (s *Server) followForm(w http.ResponseWriter, r *http.Request, sess *session) {
	ctx, cancel := callCtx(r)
	defer cancel()
	var ref *tidingsv1.EntityRef
	back := ""
	if id := r.PathValue("id"); r.PathValue("type") == "" {
		ref, back = entity.User(id), personHref(id)
	} else {
		ref = entity.Record(r.PathValue("type"), id)
		back = recordHref(ref.GetRecord())
	}
	fc := tidingsv1.NewFollowServiceClient(s.opts.Conn)
	var err error
	if r.PostFormValue("follow") == "true" {
		_, err = fc.Follow(ctx, &tidingsv1.FollowRequest{UserId: sess.ID.ID, Entity: ref}, s.creds(sess))
	} else {
		_, err = fc.Unfollow(ctx, &tidingsv1.UnfollowRequest{UserId: sess.ID.ID, Entity: ref}, s.creds(sess))
	}
	if err != nil {
		s.apiFail(w, r, sess, err)
		return
	}
	http.Redirect(w, r, back, http.StatusSeeOther) //nolint:gosec // G710: back is a page of this site, built from the entity
}

func (s *Server) updateAbout(w http.ResponseWriter, r *http.Request, sess *session) {
	ctx, cancel := callCtx(r)
	defer cancel()
	_, err := tidingsv1.NewProfileServiceClient(s.opts.Conn).UpdateAboutMe(ctx,
		&tidingsv1.UpdateAboutMeRequest{UserId: sess.ID.ID, AboutMe: r.PostFormValue("about_me")}, s.creds(sess))
	if err != nil {
		s.apiFail(w, r, sess, err)
		return
	}
	http.Redirect(w, r, personHref(sess.ID.ID), http.StatusSeeOther) //nolint:gosec // G710: the signed-in user's own page
}

// Records.

type recordData struct {
	Record        *tidingsv1.Record
	Restricted    bool
	CanFollow     bool
	Following     bool
	FollowerCount int64
	Items         []itemView
	Followers     []personRef
	Link          linkView
	FollowPath    string
	Entity        string
	CSRF          string
}

func (s *Server) record(w http.ResponseWriter, r *http.Request, sess *session) {
	ref := entity.Record(r.PathValue("type"), r.PathValue("id"))
	ctx, cancel := callCtx(r)
	defer cancel()
	rec, err := tidingsv1.NewRecordServiceClient(s.opts.Conn).GetRecord(ctx, &tidingsv1.GetRecordRequest{Ref: ref.GetRecord()}, s.creds(sess))
	if err != nil {
		s.apiFail(w, r, sess, err)
		return
	}
	d := recordData{Record: rec.GetRecord(), Restricted: rec.GetRecord().GetVisibility() == tidingsv1.Visibility_VISIBILITY_RESTRICTED,
		CanFollow: sess.ID.Kind == auth.KindEmployee, FollowPath: recordHref(ref.GetRecord()) + "/follow",
		Entity: "record:" + ref.GetRecord().GetType() + "/" + ref.GetRecord().GetExternalId(), CSRF: sess.CSRF}
	if u := rec.GetRecord().GetUrl(); u != "" {
		d.Link = linkView{URL: u, Title: u, Safe: safeURL(u)}
	}
	if err := s.entityPage(r, sess, ref, &d.Items, &d.Following, &d.FollowerCount, &d.Followers, d.CanFollow); err != nil {
		s.apiFail(w, r, sess, err)
		return
	}
	s.render(w, http.StatusOK, "record", page{Title: d.Record.GetTitle(), Nav: "records", Me: sess, Data: d})
}

// Admin.

func (s *Server) admin(w http.ResponseWriter, r *http.Request, sess *session) {
	ctx, cancel := callCtx(r)
	defer cancel()
	st, err := tidingsv1.NewAdminServiceClient(s.opts.Conn).GetSystemStatus(ctx, &tidingsv1.GetSystemStatusRequest{}, s.creds(sess))
	if err != nil {
		if status.Code(err) == codes.PermissionDenied {
			s.fail(w, r, sess, http.StatusForbidden, "System status is for administrators.")
			return
		}
		s.apiFail(w, r, sess, err)
		return
	}
	s.render(w, http.StatusOK, "admin", page{Title: "System status", Nav: "admin", Me: sess, Data: st})
}
