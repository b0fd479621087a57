package source

import (
	"bytes"
	"encoding/json"
	"testing"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		name   string
		status int
		body   string
		want   Outcome
	}{
		{"200 object", 200, `{"a":1}`, Outcome{Kind: Completed, Result: json.RawMessage(`{"a":1}`), StatusCode: 200}},
		{"299 object", 299, `{}`, Outcome{Kind: Completed, Result: json.RawMessage(`{}`), StatusCode: 299}},
		{"200 object in whitespace", 200, " \r\n\t{\"a\": [1, 2]}\n", Outcome{Kind: Completed, Result: json.RawMessage(`{"a": [1, 2]}`), StatusCode: 200}},
		{"200 array", 200, `[{"a":1}]`, Outcome{Kind: Down, Message: "source answered a non-object", StatusCode: 200}},
		{"200 string", 200, `"ok"`, Outcome{Kind: Down, Message: "source answered a non-object", StatusCode: 200}},
		{"200 number", 200, `42`, Outcome{Kind: Down, Message: "source answered a non-object", StatusCode: 200}},
		{"200 null", 200, `null`, Outcome{Kind: Down, Message: "source answered a non-object", StatusCode: 200}},
		{"200 empty", 200, ``, Outcome{Kind: Down, Message: "source answered non-JSON", StatusCode: 200}},
		{"200 whitespace", 200, " \n", Outcome{Kind: Down, Message: "source answered non-JSON", StatusCode: 200}},
		{"200 two objects", 200, `{}{}`, Outcome{Kind: Down, Message: "source answered non-JSON", StatusCode: 200}},
		{"200 truncated", 200, `{"a":`, Outcome{Kind: Down, Message: "source answered non-JSON", StatusCode: 200}},
		{"400 error and message", 400, `{"error":"INVALID_PAN","message":"PAN is malformed"}`, Outcome{Kind: Rejected, Error: "INVALID_PAN", Message: "PAN is malformed", StatusCode: 400}},
		{"400 error only", 400, `{"error":"INVALID_PAN"}`, Outcome{Kind: Rejected, Error: "INVALID_PAN", Message: "Bad Request", StatusCode: 400}},
		{"400 message only", 400, `{"message":"PAN is malformed"}`, Outcome{Kind: Rejected, Error: "UNPROCESSABLE_ENTITY", Message: "PAN is malformed", StatusCode: 400}},
		{"400 empty strings", 400, `{"error":"","message":""}`, Outcome{Kind: Rejected, Error: "UNPROCESSABLE_ENTITY", Message: "Bad Request", StatusCode: 400}},
		{"400 nulls", 400, `{"error":null,"message":null}`, Outcome{Kind: Rejected, Error: "UNPROCESSABLE_ENTITY", Message: "Bad Request", StatusCode: 400}},
		{"400 escaped strings", 400, `{"error":"E\u0041","message":"line\nbreak"}`, Outcome{Kind: Rejected, Error: "EA", Message: "line\nbreak", StatusCode: 400}},
		{"404 no body", 404, ``, Outcome{Kind: Rejected, Error: "UNPROCESSABLE_ENTITY", Message: "Not Found", StatusCode: 404}},
		{"404 html", 404, `<h1>no</h1>`, Outcome{Kind: Rejected, Error: "UNPROCESSABLE_ENTITY", Message: "Not Found", StatusCode: 404}},
		{"422 non-string error", 422, `{"error":42,"message":{"m":"x"}}`, Outcome{Kind: Rejected, Error: "UNPROCESSABLE_ENTITY", Message: "Unprocessable Entity", StatusCode: 422}},
		{"422 array", 422, `["x"]`, Outcome{Kind: Rejected, Error: "UNPROCESSABLE_ENTITY", Message: "Unprocessable Entity", StatusCode: 422}},
		{"499 unknown status", 499, ``, Outcome{Kind: Rejected, Error: "UNPROCESSABLE_ENTITY", Message: "source answered 499", StatusCode: 499}},
		{"408", 408, `{"error":"X"}`, Outcome{Kind: Down, Message: "source answered 408", StatusCode: 408}},
		{"429", 429, ``, Outcome{Kind: Down, Message: "source answered 429", StatusCode: 429}},
		{"500", 500, `{"error":"X"}`, Outcome{Kind: Down, Message: "source answered 500", StatusCode: 500}},
		{"503", 503, ``, Outcome{Kind: Down, Message: "source answered 503", StatusCode: 503}},
		{"302", 302, ``, Outcome{Kind: Down, Message: "source answered 302", StatusCode: 302}},
		{"101", 101, ``, Outcome{Kind: Down, Message: "source answered 101", StatusCode: 101}},
		{"nonsense status", 999, `{}`, Outcome{Kind: Down, Message: "source answered 999", StatusCode: 999}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := classify(tt.status, []byte(tt.body))
			wantOutcome(t, got, tt.want)
		})
	}
}

// wantOutcome compares outcomes, ignoring Err.
func wantOutcome(t *testing.T, got, want Outcome) {
	t.Helper()
	if got.Kind != want.Kind || !bytes.Equal(got.Result, want.Result) || got.Error != want.Error ||
		got.Message != want.Message || got.StatusCode != want.StatusCode {
		t.Fatalf("outcome = %s\nwant      %s", describe(got), describe(want))
	}
}

func describe(o Outcome) string {
	b, _ := json.Marshal(struct {
		Kind       string
		Result     string
		Error      string
		Message    string
		StatusCode int
	}{o.Kind.String(), string(o.Result), o.Error, o.Message, o.StatusCode})
	return string(b)
}

func FuzzClassify(f *testing.F) {
	for _, s := range []int{200, 201, 204, 302, 400, 404, 408, 422, 429, 499, 500, 503, 0, -1} {
		for _, body := range []string{`{"a":1}`, ` {}`, `[]`, `null`, `"x"`, `{"error":"E","message":"M"}`, `{"error":1}`, `<html>`, ``, "\xff{"} {
			f.Add(s, []byte(body))
		}
	}
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		out := classify(status, body)
		if out.StatusCode != status {
			t.Fatalf("StatusCode = %d, want %d", out.StatusCode, status)
		}
		switch out.Kind {
		case Completed:
			if status < 200 || status > 299 {
				t.Fatalf("Completed on status %d", status)
			}
			if !json.Valid(out.Result) || len(out.Result) == 0 || out.Result[0] != '{' {
				t.Fatalf("Completed with a result that is not a JSON object: %q", out.Result)
			}
			var m map[string]any
			if err := json.Unmarshal(out.Result, &m); err != nil || m == nil {
				t.Fatalf("Completed with a result that does not decode as an object: %q: %v", out.Result, err)
			}
		case Rejected:
			if status < 400 || status > 499 || status == 408 || status == 429 {
				t.Fatalf("Rejected on status %d", status)
			}
			if out.Error == "" || out.Message == "" {
				t.Fatalf("Rejected without error or message: %+v", out)
			}
		case Down:
			if out.Message == "" {
				t.Fatal("Down without a message")
			}
		default:
			t.Fatalf("classify gave kind %v", out.Kind)
		}
		if out.Kind != Completed && out.Result != nil {
			t.Fatalf("%v with a result", out.Kind)
		}
	})
}
