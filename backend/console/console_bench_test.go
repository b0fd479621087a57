package console_test

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkAccountsPage renders the first page of 1,000 accounts, against
// the admin API's own listing of them as the baseline: the console reads
// the listing, then filters, pages and renders it.
func BenchmarkAccountsPage(b *testing.B) {
	s := newSite(b, "")
	s.createAccounts(1000)
	for _, bc := range []struct {
		name    string
		handler http.Handler
		path    string
	}{
		{"admin_api_list", s.engine.Admin, "/taskgate/accounts"},
		{"console_page", s.srv.Config.Handler, "/accounts"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var size int
			for b.Loop() {
				w := httptest.NewRecorder()
				bc.handler.ServeHTTP(w, httptest.NewRequest(http.MethodGet, bc.path, nil))
				if w.Code != http.StatusOK {
					b.Fatal(w.Code)
				}
				size = w.Body.Len()
			}
			b.ReportMetric(float64(size)/1024, "KiB/page")
		})
	}
}
