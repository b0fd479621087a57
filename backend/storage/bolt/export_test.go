package bolt

import (
	"testing"

	bbolt "go.etcd.io/bbolt"
)

// RewriteFile changes the closed store file at path with change, in one
// transaction, as another program (or an older version) would have left
// it.
func RewriteFile(t testing.TB, path string, change func(tx *bbolt.Tx) error) {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(change)
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
}

// CloseRacing is closeRacing, for the tests of package bolt_test.
var CloseRacing = closeRacing
