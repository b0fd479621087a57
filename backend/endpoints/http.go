package endpoints

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
	"time"

	"github.com/taskgate/taskgate/backend/apierr"
	"github.com/taskgate/taskgate/backend/internal/jsonkey"
)

// maxBody bounds the body of a request of the webhooks API.
const maxBody = 64 << 10

// Serve answers a request of the webhooks API about the account's
// endpoints; path is what follows ".../webhooks": "" (GET lists, POST
// creates), "/{id}" (GET, PATCH, DELETE), "/{id}/rotate-secret" and
// "/{id}/test" (POST). operator is set for the admin API, which may change
// the endpoints of an account whose self-service is off.
func (s *Service) Serve(w http.ResponseWriter, r *http.Request, accountID, path string, operator bool) {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	if path == "" || path == "/" {
		parts = nil
	}
	ctx := r.Context()
	switch {
	case len(parts) == 0:
		switch r.Method {
		case http.MethodGet:
			list, err := s.List(accountID)
			answer(w, http.StatusOK, map[string]any{"webhooks": list}, err)
		case http.MethodPost:
			var in Input
			if !readBody(w, r, &in, false) {
				return
			}
			v, err := s.Create(ctx, accountID, in, operator)
			answer(w, http.StatusCreated, v, err)
		default:
			methodNotAllowed(w, "GET, POST")
		}
	case len(parts) == 1:
		id := parts[0]
		switch r.Method {
		case http.MethodGet:
			v, err := s.Get(accountID, id)
			answer(w, http.StatusOK, v, err)
		case http.MethodPatch:
			var in Input
			if !readBody(w, r, &in, false) {
				return
			}
			v, err := s.Change(ctx, accountID, id, in, operator)
			answer(w, http.StatusOK, v, err)
		case http.MethodDelete:
			err := s.Delete(ctx, accountID, id, operator)
			answer(w, http.StatusOK, map[string]any{"id": id, "deleted": true}, err)
		default:
			methodNotAllowed(w, "DELETE, GET, PATCH")
		}
	case len(parts) == 2 && parts[1] == "rotate-secret":
		if r.Method != http.MethodPost {
			methodNotAllowed(w, "POST")
			return
		}
		var in Rotation
		if !readBody(w, r, &in, true) {
			return
		}
		grace := DefaultGrace
		if in.Grace != nil {
			d, err := time.ParseDuration(*in.Grace)
			if err != nil {
				apierr.Write(w, apierr.BadRequest(fmt.Sprintf("grace %q: want a duration such as \"24h\"", *in.Grace)))
				return
			}
			grace = d
		}
		v, err := s.Rotate(ctx, accountID, parts[0], grace, operator)
		answer(w, http.StatusOK, v, err)
	case len(parts) == 2 && parts[1] == "test":
		if r.Method != http.MethodPost {
			methodNotAllowed(w, "POST")
			return
		}
		var in struct{}
		if !readBody(w, r, &in, true) {
			return
		}
		res, err := s.Test(ctx, accountID, parts[0])
		answer(w, http.StatusOK, res, err)
	default:
		apierr.Write(w, apierr.NotFound)
	}
}

// answer writes v with status, or the wire error of err.
func answer(w http.ResponseWriter, status int, v any, err error) {
	if err != nil {
		apierr.Write(w, apierr.From(err))
		return
	}
	apierr.WriteJSON(w, status, v)
}

func methodNotAllowed(w http.ResponseWriter, allow string) {
	w.Header().Set("Allow", allow)
	apierr.Write(w, apierr.MethodNotAllowed)
}

// readBody decodes the JSON body into v, refusing unknown fields and keys
// of another case; an empty body is allowed when optional. A body must be
// said to be JSON. It answers and returns false when the body is not
// acceptable.
func readBody(w http.ResponseWriter, r *http.Request, v any, optional bool) bool {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			apierr.Write(w, apierr.PayloadTooLarge)
		} else {
			apierr.Write(w, apierr.BadRequest("the request body could not be read"))
		}
		return false
	}
	if optional && len(bytes.TrimSpace(body)) == 0 {
		return true
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		apierr.Write(w, apierr.UnsupportedMedia)
		return false
	}
	d := json.NewDecoder(bytes.NewReader(body))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		apierr.Write(w, apierr.BadRequest("invalid JSON body: "+err.Error()))
		return false
	}
	if _, err := d.Token(); err != io.EOF {
		apierr.Write(w, apierr.BadRequest("invalid JSON body: unexpected data after the JSON value"))
		return false
	}
	var caseErr *jsonkey.CaseError
	if err := jsonkey.For(reflect.TypeOf(v)).Check(body); errors.As(err, &caseErr) {
		apierr.Write(w, apierr.BadRequest(fmt.Sprintf("invalid JSON body: unknown field %q (keys are case-sensitive: %q)", caseErr.Key, caseErr.Field)))
		return false
	}
	return true
}
