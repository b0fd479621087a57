package bolt

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"
)

func TestSortable(t *testing.T) {
	instants := []time.Time{
		time.Date(1, time.January, 1, 0, 0, 0, 0, time.UTC), // clamped
		time.Unix(0, math.MinInt64),
		time.Date(1969, time.December, 31, 23, 59, 59, 999999999, time.UTC),
		time.Unix(0, 0),
		time.Unix(0, 1),
		time.Date(2030, time.March, 4, 5, 6, 7, 8, time.FixedZone("IST", 19800)),
		time.Date(2030, time.March, 4, 5, 6, 7, 9, time.FixedZone("IST", 19800)),
		time.Unix(0, math.MaxInt64),
	}
	for i := 1; i < len(instants); i++ {
		a, b := sortable(instants[i-1]), sortable(instants[i])
		if i == 1 {
			if a != b {
				t.Errorf("sortable(year 1) = %d, want it clamped to %d", a, b)
			}
			continue
		}
		if a >= b {
			t.Errorf("sortable(%v) = %d is not below sortable(%v) = %d", instants[i-1], a, instants[i], b)
		}
	}
	if got, want := sortable(time.Date(9999, time.December, 31, 0, 0, 0, 0, time.UTC)), sortable(time.Unix(0, math.MaxInt64)); got != want {
		t.Errorf("sortable(year 9999) = %d, want it clamped to %d", got, want)
	}
	utc := time.Date(2030, time.March, 4, 0, 0, 0, 0, time.UTC)
	if sortable(utc) != sortable(utc.In(time.FixedZone("X", -3600))) {
		t.Error("sortable depends on the zone")
	}
}

// TestListKeys checks that no (account, id) prefix is a prefix of another
// pair's keys, whatever bytes the ids hold.
func TestListKeys(t *testing.T) {
	pairs := [][2]string{
		{"acme", "g"}, {"acme", "g1"}, {"acme", "g\x00"}, {"acm", "eg"}, {"acmeg", ""},
		{"a", "\x01b"}, {"a\x01", "b"}, {"acme", string(bytes.Repeat([]byte{0xff}, 256))},
		{"acme", string(bytes.Repeat([]byte("é"), 256))},
	}
	created := time.Date(2030, time.March, 4, 0, 0, 0, 0, time.UTC)
	for _, p := range pairs {
		for _, q := range pairs {
			if p == q {
				continue
			}
			k := listKey(q[0], q[1], created, "req-1")
			if bytes.HasPrefix(k, listPrefix(p[0], p[1])) {
				t.Errorf("key of %q has the prefix of %q", q, p)
			}
		}
	}

	older := listKey("acme", "g", created, "req-2")
	newer := listKey("acme", "g", created.Add(time.Nanosecond), "req-1")
	if bytes.Compare(newer, older) >= 0 {
		t.Error("a newer task's key does not sort before an older one's")
	}
	prefix := listPrefix("acme", "g")
	if got := string(listKeyRequestID(newer, len(prefix))); got != "req-1" {
		t.Errorf("request id of a list key = %q, want req-1", got)
	}
}

func TestValue(t *testing.T) {
	h := header{leased: true, seq: 42, lease: sortable(time.Unix(1_900_000_000, 5))}
	body := []byte(`{"request_id":"r"}`)
	got, gotBody, err := decodeValue(encodeValue(h, body))
	if err != nil || got != h || !bytes.Equal(gotBody, body) {
		t.Errorf("decodeValue(encodeValue) = %+v, %s, %v; want %+v, %s", got, gotBody, err, h, body)
	}
	if _, _, err := decodeValue([]byte("short")); err == nil {
		t.Error("decodeValue of a short value succeeded")
	}
}

// TestURLDuePrefix checks that the prefixes of different URLs differ and
// that none is a prefix of another's, long URLs included, that a URL
// keeps its prefix, and that a URL's key fits a bbolt key however long
// the URL.
func TestURLDuePrefix(t *testing.T) {
	long := strings.Repeat("https://hooks.example.com/a", 2000)
	urls := []string{
		"https://a.example", "https://a.example/", "https://a.example/x", "\x00https://a.example",
		long[:maxURLKeyLen], long[:maxURLKeyLen+1], long[:maxURLKeyLen+2], long, long + "/",
	}
	for i, a := range urls {
		if ka := urlKey([]byte(a)); len(ka) > maxURLKeyLen {
			t.Errorf("the key of a URL of %d bytes has %d bytes", len(a), len(ka))
		}
		for j, b := range urls {
			if i != j && bytes.Equal(urlKey([]byte(a)), urlKey([]byte(b))) {
				t.Errorf("URLs %d and %d (%d and %d bytes) have the same key", i, j, len(a), len(b))
			}
		}
	}
	s, err := Open(filepath.Join(t.TempDir(), "tasks.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	err = s.db.Update(func(tx *bbolt.Tx) error {
		if p, err := urlDuePrefix(tx, []byte(urls[0]), false); !errors.Is(err, errCorrupt) {
			t.Errorf("prefix of a URL without a number = %q, %v; want errCorrupt", p, err)
		}
		prefixes := make([][]byte, len(urls))
		// Enough URLs for numbers of two bytes.
		for i := range 300 {
			if _, err := urlDuePrefix(tx, []byte(fmt.Sprintf("https://b.example/%d", i)), true); err != nil {
				return err
			}
		}
		for i, u := range urls {
			p, err := urlDuePrefix(tx, []byte(u), true)
			if err != nil {
				return err
			}
			prefixes[i] = p
			if again, err := urlDuePrefix(tx, []byte(u), false); err != nil || !bytes.Equal(again, p) {
				t.Errorf("URL %d: prefix %q, then %q, %v", i, p, again, err)
			}
		}
		for i, pa := range prefixes {
			for j, pb := range prefixes {
				if i != j && bytes.HasPrefix(pb, pa) {
					t.Errorf("the prefix of URL %d (%d bytes) starts with that of URL %d (%d bytes)", j, len(urls[j]), i, len(urls[i]))
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
