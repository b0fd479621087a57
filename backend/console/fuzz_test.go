package console_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// FuzzConsoleForms posts arbitrary values to every form of the console,
// with a valid token: whatever the values, the answer is a page, never a
// 5xx.
func FuzzConsoleForms(f *testing.F) {
	actions := []string{
		"/accounts", "/accounts/acme", "/accounts/acme/disable", "/accounts/acme/enable",
		"/accounts/acme/keys", "/accounts/acme/keys/%s/revoke", "/accounts/acme/webhooks",
		"/accounts/acme/webhooks/%s/delete", "/accounts/acme/webhooks/%s/rotate", "/deliveries/retry",
		"/accounts/acme/webhooks/%s/enable", "/accounts/acme/webhooks/%s/disable",
	}
	f.Add(uint8(0), "acme2", "Acme", "10/s", "5", "203.0.113.0/24", "verify/pan")
	f.Add(uint8(1), "", "\x00", "1/d", "-1", "::/0\n10.0.0.0/8,", "nope")
	f.Add(uint8(4), "24h", "", "", "", "", "")
	f.Add(uint8(6), "https://93.184.215.14/x", "d", "", "", "", "verify/pan")
	f.Add(uint8(9), "acme/msg_x", "a/b/c", "", "", "", "")
	s := newSite(f, "")
	s.post("/new-account", "/accounts", url.Values{"id": {"acme"}, "name": {"Acme"}}, http.StatusCreated)
	token := csrfField.FindStringSubmatch(s.get("/new-account", http.StatusOK))[1]
	f.Fuzz(func(t *testing.T, action uint8, a, b, c, d, e, g string) {
		path := actions[int(action)%len(actions)]
		if strings.Contains(path, "%s") {
			path = strings.Replace(path, "%s", url.PathEscape(a), 1)
		}
		form := url.Values{
			"csrf": {token}, "id": {a}, "name": {b}, "rate_limit": {c}, "burst": {d}, "allow": {e},
			"task_types": {g}, "failure_webhook": {a}, "expire_others_in": {a}, "url": {a},
			"description": {b}, "grace": {c}, "delivery": {a, b},
		}
		r := httptest.NewRequest(http.MethodPost, path, strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.AddCookie(&http.Cookie{Name: "taskgate_console_csrf", Value: token})
		r.Header.Set("Sec-Fetch-Site", "same-origin")
		w := httptest.NewRecorder()
		s.srv.Config.Handler.ServeHTTP(w, r)
		if w.Code >= 500 {
			t.Fatalf("POST %s %v: %d %s", path, form, w.Code, w.Body)
		}
	})
}
