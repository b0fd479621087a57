// Package console is the operator's web console: pages over the admin API
// for accounts and their keys, webhooks and usage, tasks, failed
// deliveries, sources and nodes. Every page is rendered on the server from
// the answers of the admin API, called in process, so that the console
// shows what the API shows and changes what it changes; its assets are
// embedded, so that it works with no internet. Forms that change state
// carry a token bound to a cookie, and a request from another site is
// refused.
package console

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/json"
	"errors"
	"html/template"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/taskgate/taskgate/backend/admin"
	"github.com/taskgate/taskgate/backend/apierr"
	"github.com/taskgate/taskgate/backend/clock"
	"github.com/taskgate/taskgate/backend/webhook"
)

//go:embed ui
var assets embed.FS

// PageSize is how many rows a list page shows.
const PageSize = 50

// csrfCookie holds the token that the console's forms send back.
const csrfCookie = "taskgate_console_csrf"

// Config is what New needs.
type Config struct {
	// Admin is the admin API the console reads and changes everything
	// through (the engine's).
	Admin *admin.Handler
	// Base is the path the console is mounted at, "" or "/console"; its
	// links start with it.
	Base string
	// TaskTypes are the configured task types, for the account forms.
	TaskTypes []string
	// Logger records what fails inside the console; nil: none.
	Logger *zap.Logger
	// Clock tells the time (the system's if nil).
	Clock clock.Clock
}

// Console serves the console under its Base.
type Console struct {
	admin     *admin.Handler
	base      string
	taskTypes []string
	logger    *zap.Logger
	clock     clock.Clock
	mux       *http.ServeMux
	pages     map[string]*template.Template
}

// New returns the console of cfg, its pages parsed.
func New(cfg Config) (*Console, error) {
	if cfg.Admin == nil {
		return nil, errors.New("console: no admin API")
	}
	c := &Console{admin: cfg.Admin, base: cfg.Base, taskTypes: cfg.TaskTypes, logger: cfg.Logger, clock: cfg.Clock,
		pages: make(map[string]*template.Template)}
	if c.logger == nil {
		c.logger = zap.NewNop()
	}
	if c.clock == nil {
		c.clock = time.Now
	}
	funcs := template.FuncMap{
		"link":     c.link,
		"pathseg":  url.PathEscape,
		"time":     formatTime,
		"ago":      func(t time.Time) string { return ago(c.clock(), t) },
		"json":     prettyJSON,
		"percent":  func(f float64) string { return trimFloat(f*100, 1) + " %" },
		"ms":       func(f float64) string { return trimFloat(f, 1) + " ms" },
		"rate":     func(f float64) string { return trimFloat(f, 1) },
		"contains": func(list []string, s string) bool { return slices.Contains(list, s) },
		"join":     strings.Join,
		"add":      func(a, b int) int { return a + b },
		"last": func(a []webhook.AttemptView) *webhook.AttemptView {
			if len(a) == 0 {
				return nil
			}
			return &a[len(a)-1]
		},
	}
	layout, err := template.New("layout.html").Funcs(funcs).ParseFS(assets, "ui/layout.html")
	if err != nil {
		return nil, err
	}
	pages, _ := fs.Glob(assets, "ui/page_*.html")
	for _, p := range pages {
		name := strings.TrimSuffix(strings.TrimPrefix(p, "ui/page_"), ".html")
		t, err := template.Must(layout.Clone()).ParseFS(assets, p)
		if err != nil {
			return nil, err
		}
		c.pages[name] = t
	}
	c.route()
	return c, nil
}

// ServeHTTP serves a page, an asset, or a form's action.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	path := strings.TrimPrefix(r.URL.Path, c.base)
	if path == "" {
		path = "/"
	}
	if !strings.HasPrefix(path, "/") || !apierr.CleanPath(path) {
		c.fail(w, r, http.StatusNotFound, "No such page.")
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		if !c.sameSite(r) {
			c.fail(w, r, http.StatusForbidden, "This request came from another site, or without the console's form token: nothing was changed. Reload the page and try again.")
			return
		}
	}
	r2 := r.Clone(r.Context())
	r2.URL.Path, r2.URL.RawPath = path, ""
	c.mux.ServeHTTP(w, r2)
}

// link returns the console's path for p ("/accounts"), under Base.
func (c *Console) link(p string) string { return c.base + p }

// page is what every template gets: the page's own data, the form token
// and the flash message.
type page struct {
	Title string
	Nav   string
	CSRF  string
	Flash string
	Error string
	Data  any
}

// render writes the page name with data, setting the form token cookie
// when the browser has none.
func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, name, title, nav string, data any) {
	p := page{Title: title, Nav: nav, CSRF: c.token(w, r), Data: data}
	if f := r.URL.Query().Get("done"); f != "" {
		p.Flash = flashes[f]
	}
	if e, ok := data.(errorPage); ok {
		p.Error = e.Message
	}
	var buf bytes.Buffer
	if err := c.pages[name].ExecuteTemplate(&buf, "layout.html", p); err != nil {
		c.log("rendering "+name, err)
		http.Error(w, "the console could not render this page", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// errorPage is the data of a page that says what went wrong.
type errorPage struct{ Message string }

func (c *Console) fail(w http.ResponseWriter, r *http.Request, status int, message string) {
	c.render(w, r, status, "error", "Error", "", errorPage{Message: message})
}

// failAPI shows the admin API's error.
func (c *Console) failAPI(w http.ResponseWriter, r *http.Request, err *apierr.Error) {
	c.fail(w, r, err.Status, err.Message+" ("+err.Code+")")
}

func (c *Console) log(what string, err error) {
	c.logger.Error("console: "+what, zap.Error(err))
}

// token returns the browser's form token, making one (and its cookie)
// when it has none.
func (c *Console) token(w http.ResponseWriter, r *http.Request) string {
	if ck, err := r.Cookie(csrfCookie); err == nil && len(ck.Value) == 32 {
		return ck.Value
	}
	t := rand.Text()[:26] + "tgcsrf"
	http.SetCookie(w, &http.Cookie{
		Name: csrfCookie, Value: t, Path: c.base + "/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil,
	})
	return t
}

// sameSite tells whether a request that changes state comes from the
// console's own page: the browser says so (Sec-Fetch-Site same-origin,
// or else an Origin that is the console's; a browser sends one or the
// other with every form), and the form's token matches the cookie.
func (c *Console) sameSite(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin != "" {
		if u, err := url.Parse(origin); err != nil || u.Host != r.Host {
			return false
		}
	}
	switch r.Header.Get("Sec-Fetch-Site") {
	case "same-origin", "none":
	case "":
		if origin == "" {
			return false
		}
	default:
		return false
	}
	ck, err := r.Cookie(csrfCookie)
	if err != nil || len(ck.Value) != 32 {
		return false
	}
	r.Body = http.MaxBytesReader(nil, r.Body, 1<<20)
	form := r.PostFormValue("csrf")
	return subtle.ConstantTimeCompare([]byte(form), []byte(ck.Value)) == 1
}

// call sends a request to the admin API in process and decodes its JSON
// answer into out; an answer of 400 or more is returned as the error.
func (c *Console) call(ctx context.Context, method, path string, body, out any) *apierr.Error {
	var rd io.Reader = http.NoBody
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return errUnreadable
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, path, rd)
	if err != nil {
		return apierr.BadRequest("bad path")
	}
	if method != http.MethodGet {
		req.Header.Set("Content-Type", "application/json")
	}
	rec := &recorder{header: http.Header{}, status: http.StatusOK}
	c.admin.ServeHTTP(rec, req)
	if rec.status >= 400 {
		var e apierr.Error
		if json.Unmarshal(rec.body.Bytes(), &e) != nil || e.Code == "" {
			e = apierr.Error{Code: "ERROR", Message: strings.TrimSpace(rec.body.String())}
		}
		e.Status = rec.status
		return &e
	}
	if out != nil {
		if err := json.Unmarshal(rec.body.Bytes(), out); err != nil {
			c.log("reading "+method+" "+path, err)
			return errUnreadable
		}
	}
	return nil
}

// errUnreadable is an answer of the admin API the console cannot read.
var errUnreadable = &apierr.Error{Status: http.StatusInternalServerError, Code: "CONSOLE_ERROR", Message: "the console could not read the admin API's answer"}

// recorder is the response of an in-process call to the admin API.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
	wrote  bool
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(status int) {
	if !r.wrote {
		r.status, r.wrote = status, true
	}
}

func (r *recorder) Write(b []byte) (int, error) {
	r.wrote = true
	return r.body.Write(b)
}

// redirect sends the browser to the console's path p after a change,
// with the flash message done.
func (c *Console) redirect(w http.ResponseWriter, r *http.Request, p, done string) {
	if done != "" {
		sep := "?"
		if strings.Contains(p, "?") {
			sep = "&"
		}
		p += sep + "done=" + url.QueryEscape(done)
	}
	http.Redirect(w, r, c.link(p), http.StatusSeeOther)
}

// flashes are the messages a change leaves for the next page, by name:
// fixed, so that a link cannot make the console say anything else.
var flashes = map[string]string{
	"saved":          "Saved.",
	"disabled":       "The account is disabled: its keys no longer work.",
	"enabled":        "The account is enabled.",
	"revoked":        "The key is revoked.",
	"webhook":        "The webhook endpoint is saved.",
	"webhook-delete": "The webhook endpoint is deleted.",
	"retried":        "The deliveries are due again.",
}

// formatTime is the template's "time": the pages get times as the admin
// API's views hold them, time.Time or RFC 3339 strings, each maybe a
// pointer; none gives "".
func formatTime(v any) string {
	switch t := v.(type) {
	case time.Time:
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format("2006-01-02 15:04:05 UTC")
	case *time.Time:
		if t == nil {
			return ""
		}
		return formatTime(*t)
	case string:
		if p, err := time.Parse(time.RFC3339Nano, t); err == nil {
			return formatTime(p)
		}
		return t
	case *string:
		if t == nil {
			return ""
		}
		return formatTime(*t)
	}
	return ""
}

func ago(now, t time.Time) string {
	d := now.Sub(t).Round(time.Second)
	if d < 0 {
		d = 0
	}
	return d.String() + " ago"
}

func prettyJSON(v any) string {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return ""
	}
	return string(b)
}

func trimFloat(f float64, decimals int) string {
	s := strings.TrimRight(strings.TrimRight(strconv.FormatFloat(f, 'f', decimals, 64), "0"), ".")
	if s == "" || s == "-0" {
		return "0"
	}
	return s
}
