package redis

import (
	"bytes"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/taskgate/taskgate/internal/redistest"
)

// TestHexTimeOrder checks that the hex form of times sorts like the
// instants, nanoseconds and the ends of the range included, and its
// inverse against them.
func TestHexTimeOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	base := time.Date(2030, time.March, 4, 5, 6, 7, 890123456, time.FixedZone("IST", 5*3600+30*60))
	times := []time.Time{{}, minTime, maxTime, time.Unix(0, 0), base, base.Add(1), base.Add(-1),
		time.Date(9999, time.December, 31, 0, 0, 0, 0, time.UTC)}
	for range 1000 {
		times = append(times, base.Add(time.Duration(rng.Int64N(int64(200*365*24*time.Hour)))-100*365*24*time.Hour))
	}
	for _, a := range times {
		for _, b := range times[:50] {
			want := clamp(a).Compare(clamp(b))
			if got := strings.Compare(hexTime(a), hexTime(b)); got != want {
				t.Fatalf("hexTime(%v) vs hexTime(%v): %d, want %d", a, b, got, want)
			}
			if got := strings.Compare(invHex(a), invHex(b)); got != -want {
				t.Fatalf("invHex(%v) vs invHex(%v): %d, want %d", a, b, got, -want)
			}
		}
		if len(hexTime(a)) != 16 {
			t.Fatalf("hexTime(%v) = %q, want 16 digits", a, hexTime(a))
		}
	}
}

// The instants int64 nanoseconds since 1970 can hold: sortable clamps to
// them.
var (
	minTime = time.Unix(0, math.MinInt64)
	maxTime = time.Unix(0, math.MaxInt64)
)

// clamp is t within the instants sortable tells apart.
func clamp(t time.Time) time.Time {
	switch {
	case t.Before(minTime):
		return minTime
	case t.After(maxTime):
		return maxTime
	}
	return t
}

// scriptPreludeCheck answers with lt(ARGV[2], ARGV[3]) and the keys the
// prelude builds from ARGV[4] and ARGV[5].
var scriptPreludeCheck = newScriptSource("prelude_check", `return {lt(ARGV[2], ARGV[3]) and 1 or 0,
  taskKey(ARGV[4]), ringKey(ARGV[4]), accountQueueKey(ARGV[4], ARGV[5]), legacyQueueKey(ARGV[4]), groupKey(ARGV[4], ARGV[5]), taskIDKey(ARGV[4], ARGV[5]),
  idemKey(ARGV[4]), dlvKey(ARGV[4]), dueKey(ARGV[4]), accountKey(ARGV[4]),
  requestKey(ARGV[4], ARGV[5]), statusKey(ARGV[4], ARGV[5]),
  queuesKey, depthKey, taskLeasesKey, completedKey, seqKey, idemAgeKey, headsKey, dlvLeasesKey, endedKey, countsKey}`)

// TestPrelude checks, against a real Redis, that the scripts' keys are the
// keys Go builds and that their order of members is Redis's byte order,
// whatever the locale.
func TestPrelude(t *testing.T) {
	ctx := t.Context()
	srv := redistest.Start(t)
	s := openTest(t, srv.URL(), WithPrefix("prelude"))
	check := func(a, b, x, y string) []any {
		t.Helper()
		v, err := s.run(ctx, scriptPreludeCheck, s.key("check"), a, b, x, y)
		if err != nil {
			t.Fatal(err)
		}
		list, err := values(v)
		if err != nil {
			t.Fatal(err)
		}
		return list
	}

	for _, ids := range [][2]string{{"acme", "eg"}, {"acm", "eeg"}, {"acme.eu", "a:b"}, {"ünï", "\x00{x}"}, {"", ""}} {
		x, y := ids[0], ids[1]
		got := check("", "", x, y)[1:]
		want := []string{s.shards[0].taskKey(x), s.shards[0].ringKey(x), s.shards[0].accountQueueKey(x, y), s.shards[0].legacyQueueKey(x), s.shards[0].groupKey(x, y), s.shards[0].taskIDKey(x, y),
			s.shards[0].idemKey(x), s.shards[0].deliveryKey(x), s.shards[0].dueKey(x), s.shards[0].accountDeliveriesKey(x),
			s.shards[0].requestDeliveriesKey(x, y), s.shards[0].statusDeliveriesKey(x, y),
			s.shards[0].queuesKey(), s.shards[0].depthKey(), s.shards[0].taskLeasesKey(), s.shards[0].completedKey(), s.shards[0].seqKey(), s.shards[0].idemAgeKey(),
			s.shards[0].dueHeadsKey(), s.shards[0].deliveryLeasesKey(), s.shards[0].endedKey(), s.shards[0].deliveryCountsKey()}
		if len(got) != len(want) {
			t.Fatalf("the prelude built %d keys, want %d", len(got), len(want))
		}
		for i := range want {
			if str(got[i]) != want[i] {
				t.Errorf("key %d of %q, %q: the prelude builds %q, Go %q", i, x, y, got[i], want[i])
			}
		}
	}

	rng := rand.New(rand.NewPCG(3, 4))
	alphabet := []byte{0, 1, '-', '0', '9', ':', ';', 'A', 'Z', '_', 'a', 'f', 'z', 0x7f, 0x80, 0xc3, 0xa9, 0xff}
	random := func() string {
		b := make([]byte, rng.IntN(12))
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		return string(b)
	}
	shared := hexTime(time.Now()) + ":dlv-"
	for range 500 {
		a, b := random(), random()
		if rng.IntN(2) == 0 {
			a, b = shared+a, shared+b
		}
		if rng.IntN(10) == 0 {
			b = a
		}
		want := 0
		if bytes.Compare([]byte(a), []byte(b)) < 0 {
			want = 1
		}
		if got := check(a, b, "", "")[0]; got != int64(want) {
			t.Errorf("lt(%q, %q) = %v, want %d", a, b, got, want)
		}
	}
	// And Redis orders members so too.
	members := make([]string, 200)
	for i := range members {
		members[i] = random()
	}
	key := s.key("order")
	for _, m := range members {
		if err := s.rdb.ZAdd(ctx, key, goredis.Z{Member: m}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.rdb.ZRange(ctx, key, 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(members)
	members = slices.Compact(members)
	if !slices.Equal(got, members) {
		t.Errorf("Redis orders members %q, Go %q", got, members)
	}
}

// scriptHexOf answers with hexOf(ARGV[2], ARGV[3], ARGV[4]).
var scriptHexOf = newScriptSource("hexof_check", `return hexOf(tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]))`)

// TestHexOf checks, against a real Redis, that the scripts' sum of a TIME
// and an offset gives the hex digits Go gives the same instant, carries
// and borrows across the halves included.
func TestHexOf(t *testing.T) {
	ctx := t.Context()
	srv := redistest.Start(t)
	s := openTest(t, srv.URL(), WithPrefix("hexof"))
	rng := rand.New(rand.NewPCG(5, 6))
	cases := [][3]int64{{0, 0, 0}, {1, 0, -1000}, {1_764_000_000, 999_999, 999}, {1_764_000_000, 0, -1}, {4_294_967_295, 999_999, 15e9}}
	for range 300 {
		cases = append(cases, [3]int64{1_600_000_000 + rng.Int64N(200_000_000), rng.Int64N(1_000_000), rng.Int64N(2*int64(time.Hour)) - int64(time.Hour)})
	}
	for _, c := range cases {
		v, err := s.run(ctx, scriptHexOf, s.key("check"), c[0], c[1], c[2])
		if err != nil {
			t.Fatal(err)
		}
		want := hexTime(time.Unix(c[0], c[1]*1000+c[2]))
		if got := str(v); got != want {
			t.Fatalf("hexOf(%d s, %d µs, %d ns) = %s, Go %s", c[0], c[1], c[2], got, want)
		}
	}
}
