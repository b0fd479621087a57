package endpoints

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/taskgate/taskgate/backend/apierr"
	"github.com/taskgate/taskgate/backend/internal/jsonbody"
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
			if !readBody(w, r, &in, false, operator) {
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
			if !readBody(w, r, &in, false, operator) {
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
		if !readBody(w, r, &in, true, operator) {
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
		if !readBody(w, r, &in, true, operator) {
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

// readBody decodes the JSON body into v (jsonbody.Read); an empty body is
// allowed when optional. A body must say it is JSON; for the operator
// (the admin API, which has no credential headers to keep browsers from
// sending cross-site writes) every write must, even without a body.
func readBody(w http.ResponseWriter, r *http.Request, v any, optional, operator bool) bool {
	return jsonbody.Read(w, r, v, jsonbody.Options{Limit: maxBody, Optional: optional, TypeAlways: operator})
}
