package api

import (
	"errors"
	"net/url"
)

// parseQuery parses a query string strictly: a malformed escape or a
// parameter given twice is an error.
func parseQuery(raw string) (url.Values, error) {
	q, err := url.ParseQuery(raw)
	if err != nil {
		return nil, errors.New("the query string is malformed")
	}
	for k, vs := range q {
		if len(vs) > 1 {
			return nil, errors.New(k + " is given more than once")
		}
	}
	return q, nil
}
