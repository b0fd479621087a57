package webhook

import (
	"net/http"
	"net/url"
	"testing"
)

// TestSenderProxySetting checks the transport's proxy directly: proxy
// environment variables are read once per process, so a black-box test
// could not tell whether they are ignored.
func TestSenderProxySetting(t *testing.T) {
	req, _ := http.NewRequest(http.MethodPost, "http://receiver.example/hooks", nil)
	if p := NewSender(SenderConfig{}).client.Transport.(*http.Transport).Proxy; p != nil {
		t.Fatal("a sender without a proxy consults the environment's")
	}
	proxy := &url.URL{Scheme: "http", Host: "egress:3128"}
	got, err := NewSender(SenderConfig{Proxy: proxy}).client.Transport.(*http.Transport).Proxy(req)
	if err != nil || got.String() != proxy.String() {
		t.Fatalf("proxy %v, %v; want %v", got, err, proxy)
	}
}
