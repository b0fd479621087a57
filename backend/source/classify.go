package source

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
)

// DefaultRejectedError is the error of a rejected task whose source did not
// name one.
const DefaultRejectedError = "UNPROCESSABLE_ENTITY"

// classify maps a source's HTTP answer, its status and its whole body, to
// an outcome. The response's Content-Type is not consulted: a 2xx is
// judged by its body alone.
func classify(status int, body []byte) Outcome {
	switch {
	case status >= 200 && status <= 299:
		return completed(status, body)
	case status == http.StatusRequestTimeout || status == http.StatusTooManyRequests:
		// The source is overloaded or slow, not saying the task is wrong.
		return down(status, "source answered "+strconv.Itoa(status))
	case status >= 400 && status <= 499:
		return rejected(status, body)
	}
	// 5xx, and the statuses a source has no business answering (1xx, 3xx,
	// nonsense): the task never got a verdict.
	return down(status, "source answered "+strconv.Itoa(status))
}

// completed judges a 2xx: only a JSON object is a result.
func completed(status int, body []byte) Outcome {
	body = bytes.TrimLeft(body, " \t\r\n")
	if !json.Valid(body) {
		return down(status, "source answered non-JSON")
	}
	if body[0] != '{' {
		return down(status, "source answered a non-object")
	}
	return Outcome{Kind: Completed, Result: bytes.TrimRight(body, " \t\r\n"), StatusCode: status}
}

// rejected reads error and message from a 4xx's JSON body, each falling
// back to a default when absent, empty or not a string.
func rejected(status int, body []byte) Outcome {
	out := Outcome{Kind: Rejected, Error: DefaultRejectedError, Message: http.StatusText(status), StatusCode: status}
	if out.Message == "" {
		out.Message = "source answered " + strconv.Itoa(status)
	}
	var answer struct {
		Error   json.RawMessage `json:"error"`
		Message json.RawMessage `json:"message"`
	}
	if json.Unmarshal(body, &answer) != nil {
		return out
	}
	if s := jsonString(answer.Error); s != "" {
		out.Error = s
	}
	if s := jsonString(answer.Message); s != "" {
		out.Message = s
	}
	return out
}

// jsonString returns the string that raw encodes, or "" when raw is not a
// JSON string.
func jsonString(raw json.RawMessage) string {
	if len(raw) == 0 || raw[0] != '"' {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return ""
	}
	return s
}

func down(status int, message string) Outcome {
	return Outcome{Kind: Down, Message: message, StatusCode: status}
}
