package integration

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// browserTimeout bounds each test's use of the browser.
const browserTimeout = 2 * time.Minute

// browser starts Debian's chromium, headless, for the test; it accepts
// every confirmation dialog (the console asks before it revokes or
// disables). TASKGATE_SCREENSHOTS names a directory where shot saves the
// pages it is given (docs/img, by `make screenshots`).
type browser struct {
	t   *testing.T
	ctx context.Context
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("the console's browser tests need Debian's chromium: `make deps` installs it")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox,
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("no-proxy-server", true),
		// Paint as soon as a frame is ready, not at a display's pace: a
		// headless browser has no display.
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-gpu-vsync", true),
		chromedp.Flag("disable-frame-rate-limit", true),
		chromedp.WindowSize(1280, 900),
	)
	// The bound of the whole browser: it ends with the test anyway.
	ctx, cancel := context.WithTimeout(context.Background(), browserTimeout)
	t.Cleanup(cancel)
	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	t.Cleanup(cancelAlloc)
	bctx, cancelBrowser := chromedp.NewContext(alloc)
	t.Cleanup(cancelBrowser)
	b := &browser{t: t, ctx: bctx}
	b.acceptDialogs(bctx)
	return b
}

// acceptDialogs accepts every confirmation dialog of the tab ctx.
func (b *browser) acceptDialogs(ctx context.Context) {
	dialogs := chromedp.Events(ctx, page.JavascriptDialogOpening)
	go func() {
		for _, err := range dialogs {
			if err != nil {
				return
			}
			_, _ = chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true})
		}
	}()
}

// run runs browser actions, failing the test with what the step was.
func (b *browser) run(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, steps...); err != nil {
		loc, _ := chromedp.Run(b.ctx, chromedp.Location())
		b.t.Fatalf("%s (at %s): %v", what, loc, err)
	}
}

// text returns the text of the element the CSS selector sel names.
func (b *browser) text(sel string) string {
	b.t.Helper()
	s, err := chromedp.Run(b.ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		b.t.Fatalf("reading %s: %v", sel, err)
	}
	return s
}

// shot saves the page as name.png in TASKGATE_SCREENSHOTS, when set.
func (b *browser) shot(name string) {
	b.t.Helper()
	dir := os.Getenv("TASKGATE_SCREENSHOTS")
	if dir == "" {
		return
	}
	png, err := chromedp.Run(b.ctx, chromedp.CaptureScreenshot())
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// css is a CSS selector of the first matching element.
func css(sel string) chromedp.CSS { return chromedp.CSS(sel) }

// startConsoleServer starts a server on bolt with the task type adm/echo,
// the task API on apiPort, the console alone on consolePort, and the
// console behind basic_auth (user ops, password "console-password") on
// authPort.
func startConsoleServer(t *testing.T) (s *server, apiPort, consolePort, authPort int) {
	t.Helper()
	src := newFakeSource(t, func(f *fakeSource, w http.ResponseWriter, r *http.Request, c sourceCall) {
		answerJSON(w, http.StatusOK, `{"status":"done"}`)
	})
	apiPort, consolePort, authPort = freePort(t), freePort(t), freePort(t)
	s = newServer(t)
	// bcrypt of "console-password", as `caddy hash-password` gives it.
	const hash = "$2a$14$ULqFIz6Rkl0h8NeFp69Gyu9dM7TjAJN7.sNn4enJdA.AVh0GvgTo2"
	s.start(config{Global: fmt.Sprintf(`
taskgate {
	storage %[1]s
	account demo {
		key demo-key
	}
	task_type adm/echo {
		source %[2]s/echo
	}
	webhooks {
		allow_private 127.0.0.1/32
		timeout 2s
	}
}`, s.storageOption("bolt"), src.url), Sites: taskSite(apiPort) + fmt.Sprintf(`
http://127.0.0.1:%[1]d {
	taskgate_console
}

http://127.0.0.1:%[2]d {
	basic_auth {
		ops %[3]s
	}
	taskgate_console
}`, consolePort, authPort, hash)})
	return s, apiPort, consolePort, authPort
}

// TestConsoleInABrowser drives the console in chromium: it lists the
// accounts, creates one whose key then works on the task API, rotates and
// revokes its keys, adds a webhook endpoint, finds a task by its request
// id with its webhook attempts, retries the failed deliveries, and shows
// sources and nodes. With TASKGATE_SCREENSHOTS set it saves the pages
// that the docs show.
func TestConsoleInABrowser(t *testing.T) {
	t.Parallel()
	recv := newHookReceiver(t, always(http.StatusBadRequest))
	s, apiPort, consolePort, _ := startConsoleServer(t)
	b := newBrowser(t)
	console := func(path string) string { return siteURL(consolePort, path) }

	b.run("accounts page", chromedp.Navigate(console("/")), chromedp.WaitVisible(css("#accounts")))
	if got := b.text("#accounts tbody"); !strings.Contains(got, "demo") {
		t.Fatalf("accounts list %q, want demo", got)
	}

	// Create an account through the form; its key, shown once, works.
	b.run("new account form",
		chromedp.Click(css(`a.button[href="/new-account"]`)),
		chromedp.WaitVisible(css(`#new-account`)),
		chromedp.SendKeys(css(`input[name=id]`), "acme"),
		chromedp.SendKeys(css(`input[name=name]`), "Acme Verification"),
		chromedp.SendKeys(css(`input[name=rate_limit]`), "20/s"),
		chromedp.Click(css(`input[name=task_types][value="adm/echo"]`)),
		chromedp.Click(css(`#new-account button`)),
		chromedp.WaitVisible(css(`#secret`)),
	)
	key := b.text("#secret")
	if !apiKeyPattern.MatchString(key) {
		t.Fatalf("key shown %q", key)
	}
	acme := taskClient{s: s, port: apiPort, auth: creds("acme", key)}
	first := acme.createAsync(t, "adm/echo", "t1", "g1", `{}`)
	acme.waitTerminal(t, first)

	// Its page; rotate its key, then revoke the first one.
	b.run("account page",
		chromedp.Click(css(`a.button`)),
		chromedp.WaitVisible(css(`#keys`)),
	)
	if h := b.text("h1"); !strings.Contains(h, "acme") || !strings.Contains(h, "Acme Verification") {
		t.Fatalf("account page title %q", h)
	}
	b.run("rotate the key",
		chromedp.Click(css(`#rotate-key button`)),
		chromedp.WaitVisible(css(`#secret`)),
	)
	rotated := b.text("#secret")
	if !apiKeyPattern.MatchString(rotated) || rotated == key {
		t.Fatalf("rotated key %q", rotated)
	}
	b.run("back to the account", chromedp.Click(css(`a.button`)), chromedp.WaitVisible(css(`#keys`)))
	if rows := b.text("#keys tbody"); strings.Count(rows, "never") != 1 {
		t.Errorf("keys after the rotation %q: want the old one expiring and the new one not", rows)
	}
	b.run("revoke the first key",
		chromedp.Click(css(`#keys tbody tr:first-child button.danger`)),
		chromedp.WaitVisible(css(`p.flash`)),
	)
	if got := b.text("p.flash"); !strings.Contains(got, "revoked") {
		t.Errorf("flash %q", got)
	}
	wantError(t, acme.post(t, "async", "adm/echo", `{"task_id":"t2","group_id":"g1","data":{}}`, nil), http.StatusForbidden, "INVALID_CREDENTIALS")
	acme.auth = creds("acme", rotated)

	// A webhook endpoint whose receiver refuses every delivery (400: a
	// failure at once, never retried by itself).
	b.run("add a webhook endpoint",
		chromedp.SendKeys(css(`#add-webhook input[name=url]`), recv.url+"/hooks"),
		chromedp.SendKeys(css(`#add-webhook input[name=description]`), "main receiver"),
		chromedp.Click(css(`#add-webhook button`)),
		chromedp.WaitVisible(css(`#secret`)),
	)
	if secret := b.text("#secret"); !strings.HasPrefix(secret, "whsec_") {
		t.Fatalf("endpoint secret %q", secret)
	}
	var requestIDs []string
	for i := range 3 {
		rid := acme.createAsync(t, "adm/echo", fmt.Sprintf("w%d", i), "g2", `{}`)
		acme.waitDelivery(t, rid, "", "failed", func(d deliveryObject) bool { return d.Status == "failed" })
		requestIDs = append(requestIDs, rid)
	}

	// The task's page, linked by its request id alone.
	b.run("task page", chromedp.Navigate(console("/tasks/"+requestIDs[0])), chromedp.WaitVisible(css(`#task-json`)))
	if got := b.text("#task-json"); !strings.Contains(got, `"request_id": "`+requestIDs[0]+`"`) || !strings.Contains(got, `"status": "completed"`) {
		t.Fatalf("task object %s", got)
	}
	if got := b.text(".attempts tbody"); !strings.Contains(got, "400") {
		t.Errorf("attempts %q, want the receiver's 400", got)
	}
	b.shot("console-task")

	// The search finds the group's tasks, each linking to its page.
	b.run("task search",
		chromedp.Navigate(console("/tasks")),
		chromedp.SetValue(css(`select[name=by]`), "group_id"),
		chromedp.SendKeys(css(`#task-search input[name=q]`), "g2"),
		chromedp.Click(css(`#task-search button`)),
		chromedp.WaitVisible(css(`#tasks`)),
	)
	links, err := chromedp.Run(b.ctx, chromedp.Evaluate[int](`document.querySelectorAll('#tasks tbody a[href*="/tasks/"]').length`))
	if err != nil {
		t.Fatal(err)
	}
	if links != 3 {
		t.Errorf("%d tasks found in g2, want 3", links)
	}

	// The failed deliveries, retried all at once.
	b.run("deliveries page", chromedp.Navigate(console("/deliveries")), chromedp.WaitVisible(css(`#deliveries`)))
	if got := b.text("#deliveries tbody"); strings.Count(got, "HTTP 400") != 3 {
		t.Fatalf("failed deliveries %q, want 3 refused with HTTP 400", got)
	}
	b.shot("console-deliveries")
	before := len(recv.requests())
	b.run("retry them all",
		chromedp.Click(css(`input[data-select-all]`)),
		chromedp.Click(css(`#retry-selected`)),
		chromedp.WaitVisible(css(`p.flash`)),
	)
	recv.waitRequests(t, before+3)

	// Usage, sources and nodes.
	b.run("account page with usage", chromedp.Navigate(console("/accounts/acme")), chromedp.WaitVisible(css(`#usage svg rect`)))
	if got := b.text("#by-type"); !strings.Contains(got, "adm/echo") {
		t.Errorf("tasks by type %q", got)
	}
	b.shot("console-account")
	b.run("sources page", chromedp.Navigate(console("/sources")), chromedp.WaitVisible(css(`#sources`)))
	if got := b.text("#sources tbody"); !strings.Contains(got, "adm/echo") || !strings.Contains(got, "up") {
		t.Errorf("sources %q", got)
	}
	b.shot("console-sources")
	b.run("nodes page", chromedp.Navigate(console("/nodes")), chromedp.WaitVisible(css(`#nodes`)))
	if got := b.text("#nodes tbody"); !strings.Contains(got, "this node") || !strings.Contains(got, "up") {
		t.Errorf("nodes %q", got)
	}
	b.run("accounts page", chromedp.Navigate(console("/accounts")), chromedp.WaitVisible(css(`#accounts`)))
	b.shot("console-accounts")
}

// TestConsoleRefusesCrossSiteAndStrangers: the console behind basic_auth
// asks for the password; a form posted from another site changes
// nothing.
func TestConsoleRefusesCrossSiteAndStrangers(t *testing.T) {
	t.Parallel()
	s, _, consolePort, authPort := startConsoleServer(t)
	if r := s.get(t, siteURL(authPort, "/accounts"), nil); r.status != http.StatusUnauthorized {
		t.Fatalf("behind basic_auth without a password: %d, want 401", r.status)
	}
	h := http.Header{"Authorization": {"Basic b3BzOmNvbnNvbGUtcGFzc3dvcmQ="}} // ops:console-password
	if r := s.get(t, siteURL(authPort, "/accounts"), h); r.status != http.StatusOK || !strings.Contains(string(r.body), "demo") {
		t.Fatalf("behind basic_auth with the password: %d", r.status)
	}

	// A page of another site posts a form to the console, in a browser
	// that has the console's cookie: refused.
	attacker := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprintf(w, `<form id="f" method="post" action="%s"><input name="id" value="stolen"><input name="name" value="Stolen"><input name="csrf" value="guess"></form><script>document.getElementById("f").submit()</script>`, siteURL(consolePort, "/accounts"))
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	attackerPort := ln.Addr().(*net.TCPAddr).Port
	go func() { _ = attacker.Serve(ln) }()
	t.Cleanup(func() { _ = attacker.Close() })

	b := newBrowser(t)
	b.run("the console sets its cookie", chromedp.Navigate(siteURL(consolePort, "/accounts")), chromedp.WaitVisible(css("#accounts")))
	// localhost is another site than 127.0.0.1 to the browser (a port
	// does not make a site).
	b.run("the attacker's page", chromedp.Navigate(fmt.Sprintf("http://localhost:%d/", attackerPort)))
	b.run("the answer", chromedp.WaitReady(css("body")))
	body := b.text("body")
	deadline := time.Now().Add(browserTimeout / 4)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !strings.Contains(body, "nothing was changed") {
		if time.Now().After(deadline) {
			t.Fatalf("the cross-site form got %q", body)
		}
		<-tick.C
		body = b.text("body")
	}
	if r := adminCall(t, s, http.MethodGet, "/taskgate/accounts/stolen", ""); r.status != http.StatusNotFound {
		t.Fatalf("the cross-site form created an account: %d %s", r.status, r.body)
	}
}

// TestConsoleIsLight: with 1,000 accounts, the first page of the accounts
// list, with its style sheet and script, weighs under 300 KB in the
// browser and shows 50 of them. (How fast it paints is measured by `make
// bench`, where a figure belongs.)
func TestConsoleIsLight(t *testing.T) {
	t.Parallel()
	s, _, consolePort, _ := startConsoleServer(t)
	for i := range 1000 {
		r := adminCall(t, s, http.MethodPost, "/taskgate/accounts", fmt.Sprintf(`{"id":"customer-%04d","name":"Customer %d"}`, i, i))
		if r.status != http.StatusCreated {
			t.Fatalf("account %d: %d %s", i, r.status, r.body)
		}
	}
	b := newBrowser(t)
	type weight struct {
		Bytes float64 `json:"bytes"`
		Rows  int     `json:"rows"`
		Next  bool    `json:"next"`
	}
	b.run("the accounts page", chromedp.Navigate(siteURL(consolePort, "/accounts")), chromedp.WaitVisible(css("#accounts")),
		chromedp.Poll[chromedp.Void](`document.readyState === "complete"`, chromedp.WithPollingTimeout(browserTimeout/4)))
	w, err := chromedp.Run(b.ctx, chromedp.Evaluate[weight](`(() => {
		const nav = performance.getEntriesByType("navigation")[0];
		let bytes = nav.transferSize;
		for (const r of performance.getEntriesByType("resource")) bytes += r.transferSize;
		return {bytes: bytes, rows: document.querySelectorAll("#accounts tbody tr").length, next: !!document.querySelector('a[rel=next]')};
	})()`))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("accounts page with 1,000 accounts: %.1f KB transferred", w.Bytes/1000)
	if w.Bytes <= 0 || w.Bytes > 300_000 {
		t.Errorf("the first page weighs %.0f bytes, want under 300 KB", w.Bytes)
	}
	if w.Rows != 50 || !w.Next {
		t.Errorf("%d rows, a next page: %v; want 50 and a link to the next", w.Rows, w.Next)
	}
}
