package storage

import (
	"strings"
	"testing"
	"time"
)

// TestConfigStringHidesPasswords: what the logs show of a Redis store
// holds none of its passwords: the user's, nor a Sentinel URL's master
// password, given in the query.
func TestConfigStringHidesPasswords(t *testing.T) {
	for _, url := range []string{
		"redis://:S3cret@127.0.0.1:6379/0",
		"redis://user:S3cret@127.0.0.1:6379/0",
		"redis://127.0.0.1:26379/0?master_name=main&password=S3cret",
		"redis://:other@127.0.0.1:26379/0?master_name=main&sentinel_password=S3cret&Password=S3cret",
	} {
		got := Config{Type: "redis", URL: url}.String()
		if strings.Contains(got, "S3cret") || strings.Contains(got, "other") || !strings.Contains(got, "127.0.0.1") {
			t.Errorf("%s is logged as %q", url, got)
		}
	}
}

// TestReplicasTimeoutBounded: a create waits at most a minute for its
// replicas; longer is refused (near the largest duration it wrapped, and
// every create failed at once).
func TestReplicasTimeoutBounded(t *testing.T) {
	c := Config{Type: "redis", URL: "redis://127.0.0.1:6379/0", Replicas: 1, ReplicasTimeout: MaxReplicasTimeout + time.Nanosecond}
	if err := c.Validate(); err == nil {
		t.Errorf("Validate with replicas_timeout %s succeeded, want an error", c.ReplicasTimeout)
	}
	c.ReplicasTimeout = MaxReplicasTimeout
	if err := c.Validate(); err != nil {
		t.Errorf("Validate with replicas_timeout %s: %v", c.ReplicasTimeout, err)
	}
}
