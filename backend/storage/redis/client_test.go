package redis

import (
	"testing"

	goredis "github.com/redis/go-redis/v9"
)

func TestNewClientKinds(t *testing.T) {
	for _, tc := range []struct {
		url     string
		cluster bool
		name    string
	}{
		{"redis://127.0.0.1:6379/0", false, "127.0.0.1:6379"},
		{"rediss://user:secret@redis.example:6380/2", false, "redis.example:6380"},
		{"redis://:secret@10.0.0.1:26379/0?master_name=main&addr=10.0.0.2:26379", false, "sentinel master main"},
		{"redis://10.0.0.1:7000?addr=10.0.0.2:7000&addr=10.0.0.3:7000", true, "cluster 10.0.0.1:7000,10.0.0.2:7000,10.0.0.3:7000"},
	} {
		rdb, name, err := newClient(tc.url, ioTimeout)
		if err != nil {
			t.Errorf("%s: %v", tc.url, err)
			continue
		}
		_, isCluster := rdb.(*goredis.ClusterClient)
		if isCluster != tc.cluster || name != tc.name {
			t.Errorf("%s: cluster %v, name %q; want %v, %q", tc.url, isCluster, name, tc.cluster, tc.name)
		}
		_ = rdb.Close()
	}
	for _, bad := range []string{"http://127.0.0.1:6379", "redis://h:1?bogus=1", "://"} {
		if rdb, _, err := newClient(bad, ioTimeout); err == nil {
			_ = rdb.Close()
			t.Errorf("%s: want an error", bad)
		}
	}
}
