package integration

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestTLSInternal runs the chain on an HTTPS site with Caddy's local CA and
// checks its answers over TLS, trusting only that CA.
func TestTLSInternal(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	s.start(config{
		Global: `
taskgate {
	account alpha {
		key key-alpha
	}
	account ten {
		key key-ten
		allow 10.0.0.0/8
	}
}`,
		Sites: fmt.Sprintf(`
https://localhost:%d {
	tls internal
	api_key_auth
	ip_allowlist
	account_rate_limit
	respond "tls {http.auth.user.id}" 200
}`, s.httpsPort),
	})

	// The local CA's root appears in the storage once the TLS app runs.
	rootPath := filepath.Join(s.storage, "pki", "authorities", "local", "root.crt")
	var rootPEM []byte
	deadline := time.Now().Add(readyTimeout)
	for {
		var err error
		if rootPEM, err = os.ReadFile(rootPath); err == nil && len(rootPEM) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no local CA root at %s: %v", rootPath, err)
		}
		time.Sleep(25 * time.Millisecond)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(rootPEM) {
		t.Fatalf("%s holds no certificate", rootPath)
	}
	// localhost is dialled at 127.0.0.1, where the site is bound.
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	client := &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
			ForceAttemptHTTP2: true,
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return dialer.DialContext(ctx, network, fmt.Sprintf("127.0.0.1:%d", s.httpsPort))
			},
		},
	}
	t.Cleanup(client.CloseIdleConnections)
	u := fmt.Sprintf("https://localhost:%d/v3/tasks", s.httpsPort)

	// The certificate may be issued just after the config loaded: retry the
	// handshake until it succeeds.
	for {
		req, _ := http.NewRequest(http.MethodGet, u, nil)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.TLS == nil {
				t.Fatal("answer not over TLS")
			}
			if resp.ProtoMajor != 2 {
				t.Errorf("protocol %s, want HTTP/2", resp.Proto)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no TLS answer from %s: %v", u, err)
		}
		time.Sleep(50 * time.Millisecond)
	}

	tests := []struct {
		name   string
		header http.Header
		status int
		code   string
	}{
		{"no credentials", nil, 401, "MISSING_CREDENTIALS"},
		{"wrong key", creds("alpha", "key-wrong"), 403, "INVALID_CREDENTIALS"},
		{"address not allowed", creds("ten", "key-ten"), 403, "IP_NOT_ALLOWED"},
		{"right key", creds("alpha", "key-alpha"), 200, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := doWith(t, client, http.MethodGet, u, tc.header, nil)
			if tc.code != "" {
				wantError(t, r, tc.status, tc.code)
				return
			}
			wantOK(t, r, "tls alpha")
			if r.header.Get("RateLimit-Policy") != `"default";q=30;w=1` {
				t.Errorf("RateLimit-Policy %q, want the default \"default\";q=30;w=1", r.header.Get("RateLimit-Policy"))
			}
		})
	}
}
