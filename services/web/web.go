// Package web is Tidings' reference web page for employees: server-rendered
// html/template pages with a little progressive JavaScript, every asset
// embedded in the binary.
//
// Every page is rendered from the real API (gRPC calls made with the signed-
// in employee's token), and the browser's own calls (posting, following,
// the live feed over server-sent events, @mention suggestions) go to the
// HTTP/JSON API under /v1/, through a gateway that turns the session cookie
// into the bearer token and checks the CSRF token.
//
// The session is the bearer token itself, in an HttpOnly, SameSite=Strict
// cookie (Secure over TLS): the browser's scripts never see it, and nothing
// is kept in local storage. How a token is obtained is the sign-in's
// business: in development a "sign in as" picker over the directory mints
// one (Options.DevTokens); otherwise a token is pasted. An OIDC
// authorization-code flow plugs in the same way: its callback sets the same
// cookie with the token it obtained.
package web

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode"

	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc"

	"github.com/tidingshq/tidings/pkg/auth"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Options configure New.
type Options struct {
	// Conn reaches the gRPC API; pages are rendered from it.
	Conn grpc.ClientConnInterface
	// API is the HTTP/JSON API (pkg/httpapi, or a proxy to it), for the
	// browser's calls under /v1/.
	API http.Handler
	// DevTokens, when set, turns on the development sign-in: a picker over
	// the directory that mints tokens. Never set in production.
	DevTokens func(kind auth.Kind, id string) (string, error)
	// CSRFKey keys the CSRF tokens; replicas behind one balancer share it.
	// Random when empty.
	CSRFKey []byte
	// SecureCookies marks the session cookie Secure even without TLS here
	// (TLS ends at a proxy in front).
	SecureCookies bool
	Logger        *slog.Logger
}

// CookieName is the session cookie.
const CookieName = "tidings_session"

// csrfHeader carries the CSRF token of the browser's API calls; forms send
// the field csrfField.
const (
	csrfHeader = "X-CSRF-Token"
	csrfField  = "csrf"
)

// Server serves the pages.
type Server struct {
	opts  Options
	pages map[string]*template.Template
	mux   *http.ServeMux
	log   *slog.Logger
}

// New builds the web page's handler.
func New(opts Options) (*Server, error) {
	if len(opts.CSRFKey) == 0 {
		opts.CSRFKey = make([]byte, 32)
		if _, err := rand.Read(opts.CSRFKey); err != nil {
			return nil, err
		}
	}
	pages, err := parseTemplates()
	if err != nil {
		return nil, err
	}
	s := &Server{opts: opts, pages: pages, mux: http.NewServeMux(), log: opts.Logger}
	static, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, err
	}
	s.mux.Handle("GET /static/", http.StripPrefix("/static/", cacheStatic(http.FileServerFS(static))))
	s.mux.HandleFunc("GET /signin", s.signInPage)
	s.mux.HandleFunc("POST /signin", s.signIn)
	s.mux.HandleFunc("POST /signout", s.signOut)
	s.mux.HandleFunc("GET /{$}", s.signedIn(s.home))
	s.mux.HandleFunc("POST /compose", s.signedIn(s.compose))
	s.mux.HandleFunc("GET /people", s.signedIn(s.people))
	s.mux.HandleFunc("GET /people/{id}", s.signedIn(s.person))
	s.mux.HandleFunc("POST /people/{id}/follow", s.signedIn(s.followForm))
	s.mux.HandleFunc("POST /about", s.signedIn(s.updateAbout))
	s.mux.HandleFunc("GET /records/{type}/{id}", s.signedIn(s.record))
	s.mux.HandleFunc("POST /records/{type}/{id}/follow", s.signedIn(s.followForm))
	s.mux.HandleFunc("GET /admin", s.signedIn(s.admin))
	s.mux.HandleFunc("POST /activities/{id}/like", s.signedIn(s.likeForm))
	s.mux.HandleFunc("POST /activities/{id}/comments", s.signedIn(s.commentForm))
	s.mux.HandleFunc("GET /notifications", s.signedIn(s.notifications))
	s.mux.HandleFunc("POST /notifications/read", s.signedIn(s.markRead))
	s.mux.Handle("/v1/", s.gateway())
	return s, nil
}

// ServeHTTP implements http.Handler, with the security headers of every
// response.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	// No inline script or style anywhere; nothing from other origins.
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "+
		"connect-src 'self'; font-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	s.mux.ServeHTTP(w, r)
}

func cacheStatic(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		next.ServeHTTP(w, r)
	})
}

// session is the signed-in caller.
type session struct {
	Token string
	ID    auth.Identity
	CSRF  string
	// Unread is the bell's count of unread notifications (employees).
	Unread int64
}

// sessionOf reads the session cookie. The token's claims are read without
// checking the signature: the API checks it on every call, and a page whose
// calls fail with Unauthenticated sends the caller to sign in again.
func (s *Server) sessionOf(r *http.Request) (*session, bool) {
	c, err := r.Cookie(CookieName)
	if err != nil || c.Value == "" {
		return nil, false
	}
	var claims auth.Claims
	if _, _, err := jwt.NewParser().ParseUnverified(c.Value, &claims); err != nil {
		return nil, false
	}
	kind, err := auth.ParseKind(claims.Kind)
	if err != nil || claims.Subject == "" {
		return nil, false
	}
	if claims.ExpiresAt != nil && claims.ExpiresAt.Before(time.Now()) {
		return nil, false
	}
	return &session{Token: c.Value, ID: auth.Identity{Kind: kind, ID: claims.Subject, Roles: claims.Roles}, CSRF: s.csrfToken(c.Value)}, true
}

// csrfToken is bound to the session: HMAC(key, session token).
func (s *Server) csrfToken(token string) string {
	m := hmac.New(sha256.New, s.opts.CSRFKey)
	m.Write([]byte("tidings-web-csrf\x00"))
	m.Write([]byte(token))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// checkCSRF accepts a state-changing request only with the session's CSRF
// token (header or form field) and, when the browser says where it comes
// from, from this origin.
func (s *Server) checkCSRF(r *http.Request, sess *session) bool {
	if origin := r.Header.Get("Origin"); origin != "" {
		u, err := url.Parse(origin)
		if err != nil || u.Host != r.Host {
			return false
		}
	}
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return false
	}
	got := r.Header.Get(csrfHeader)
	if got == "" {
		got = r.PostFormValue(csrfField)
	}
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(sess.CSRF)) == 1
}

func (s *Server) setSession(w http.ResponseWriter, r *http.Request, token string, ttl time.Duration) {
	//nolint:gosec // G124: HttpOnly and SameSite=Strict always; Secure whenever TLS is in front (or configured)
	http.SetCookie(w, &http.Cookie{
		Name:     CookieName,
		Value:    token,
		Path:     "/",
		MaxAge:   int(ttl.Seconds()),
		HttpOnly: true,
		Secure:   s.opts.SecureCookies || r.TLS != nil,
		SameSite: http.SameSiteStrictMode,
	})
}

func (s *Server) clearSession(w http.ResponseWriter, r *http.Request) {
	//nolint:gosec // G124: as setSession
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: "/", MaxAge: -1, HttpOnly: true,
		Secure: s.opts.SecureCookies || r.TLS != nil, SameSite: http.SameSiteStrictMode})
}

// signedIn runs h with the session, or sends the caller to sign in.
func (s *Server) signedIn(h func(http.ResponseWriter, *http.Request, *session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		sess, ok := s.sessionOf(r)
		if !ok {
			http.Redirect(w, r, "/signin", http.StatusSeeOther)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead && !s.checkCSRF(r, sess) {
			s.fail(w, r, sess, http.StatusForbidden, "This form expired or came from another site. Go back, reload and try again.")
			return
		}
		if r.Method == http.MethodGet {
			sess.Unread = s.unread(r.Context(), sess)
		}
		h(w, r, sess)
	}
}

// gateway passes the browser's API calls on with the session's token. The
// API itself authorizes them; the gateway refuses state-changing calls
// without the CSRF token. Calls that bring their own Authorization header
// pass through untouched (scripts and apps on the same host).
func (s *Server) gateway() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.opts.API == nil {
			http.NotFound(w, r)
			return
		}
		if r.Header.Get("Authorization") == "" {
			if sess, ok := s.sessionOf(r); ok {
				if r.Method != http.MethodGet && r.Method != http.MethodHead && !s.checkCSRF(r, sess) {
					w.Header().Set("Content-Type", "application/json")
					w.WriteHeader(http.StatusForbidden)
					_, _ = w.Write([]byte(`{"code":7,"message":"missing or wrong CSRF token","details":[]}`))
					return
				}
				r = r.Clone(r.Context())
				r.Header.Set("Authorization", "Bearer "+sess.Token)
			}
		}
		s.opts.API.ServeHTTP(w, r)
	})
}

// callCtx returns a context whose gRPC calls carry the session's token.
// callTimeout bounds each API call a page makes.
const callTimeout = 10 * time.Second

func callCtx(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), callTimeout)
}

func (s *Server) creds(sess *session) grpc.CallOption {
	return grpc.PerRPCCredentials(auth.PerRPCToken(sess.Token))
}

// safeNext returns a local path to go to after sign-in.
func safeNext(next string) string {
	u, err := url.Parse(next)
	ok := err == nil && u.Scheme == "" && u.Host == "" && u.User == nil &&
		strings.HasPrefix(next, "/") && !strings.HasPrefix(next, "//") &&
		!strings.ContainsFunc(next, func(r rune) bool { return r == '\\' || unicode.IsControl(r) || unicode.IsSpace(r) })
	if ok {
		return next
	}
	return "/"
}
