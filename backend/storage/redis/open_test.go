package redis

import "testing"

// openTest opens a store on the Redis at url and closes it when the test
// ends (Close may be called before).
func openTest(t testing.TB, url string, opts ...Option) *Store {
	t.Helper()
	s, err := Open(t.Context(), url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
