// Package jsonbody reads the JSON bodies of the admin API and of the
// webhook endpoints API strictly: one object, no unknown field, no key
// that names a field only in another case, within a size.
package jsonbody

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"strings"

	"github.com/taskgate/taskgate/backend/apierr"
	"github.com/taskgate/taskgate/backend/internal/jsonkey"
)

// RequireJSON answers 415 and returns false unless r says its body is
// application/json. Every write of an API without credential headers
// (the admin API) must say so, even without a body: a web page can make a
// browser send a cross-site POST with a form's content type, or none,
// without asking first (no CORS preflight), but not one with
// application/json.
func RequireJSON(w http.ResponseWriter, r *http.Request) bool {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		apierr.Write(w, apierr.UnsupportedMedia)
		return false
	}
	return true
}

// Options say how Read reads a body.
type Options struct {
	// Limit bounds the body, in bytes (413 beyond).
	Limit int64
	// Optional allows an empty body, which leaves v as it is.
	Optional bool
	// TypeAlways requires the JSON content type of an empty body too
	// (RequireJSON); otherwise only a body must say it is JSON.
	TypeAlways bool
}

// Read decodes the JSON body of r into v (DecodeStrict). It answers and
// returns false when the body is not acceptable.
func Read(w http.ResponseWriter, r *http.Request, v any, o Options) bool {
	if o.TypeAlways && !RequireJSON(w, r) {
		return false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, o.Limit))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			apierr.Write(w, apierr.PayloadTooLarge)
		} else {
			apierr.Write(w, apierr.BadRequest("the request body could not be read"))
		}
		return false
	}
	empty := len(bytes.TrimSpace(body)) == 0
	if empty && o.Optional {
		return true
	}
	if !o.TypeAlways && !RequireJSON(w, r) {
		return false
	}
	if empty {
		apierr.Write(w, apierr.BadRequest("a JSON object is required"))
		return false
	}
	if err := DecodeStrict(body, v); err != nil {
		apierr.Write(w, apierr.BadRequest("the body must be a JSON object: "+Problem(err)))
		return false
	}
	return true
}

// DecodeStrict decodes b into v, refusing unknown fields: a key that
// names a field only when case is ignored is unknown too (encoding/json
// would take it for the field).
func DecodeStrict(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return err
	}
	if _, err := d.Token(); err != io.EOF {
		return errors.New("unexpected data after the JSON value")
	}
	var caseErr *jsonkey.CaseError
	if err := jsonkey.For(reflect.TypeOf(v)).Check(b); errors.As(err, &caseErr) {
		return fmt.Errorf("json: unknown field %q (keys are case-sensitive: %q)", caseErr.Key, caseErr.Field)
	}
	return nil
}

// Problem says what is wrong with a body in the client's words.
func Problem(err error) string {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &typeErr):
		if typeErr.Field != "" {
			return typeErr.Field + ": wrong type (" + typeErr.Value + ")"
		}
		return "found " + typeErr.Value
	case errors.As(err, &syntaxErr), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return "malformed JSON"
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}
