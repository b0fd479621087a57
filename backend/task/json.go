package task

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/taskgate/taskgate/backend/internal/jsonenc"
)

// AppendJSON appends the task's JSON to b, as the stores keep it: the
// bytes encoding/json gives with HTML left unescaped (data and result
// compacted), without its reflection. A store encodes a task at every
// creation and change, and reflection was most of that cost
// (BenchmarkAppendJSON); TestAppendJSON holds the two to the same bytes.
// What encoding/json refuses it refuses too, and returns nil then.
func (t *Task) AppendJSON(b []byte) ([]byte, error) {
	b = slices.Grow(b, t.jsonSize())
	var err error
	b = append(b, `{"request_id":`...)
	b = appendString(b, t.RequestID)
	b = append(b, `,"account_id":`...)
	b = appendString(b, t.AccountID)
	b = append(b, `,"action":`...)
	b = appendString(b, t.Action)
	b = append(b, `,"type":`...)
	b = appendString(b, t.Type)
	b = append(b, `,"task_id":`...)
	b = appendString(b, t.TaskID)
	b = append(b, `,"group_id":`...)
	b = appendString(b, t.GroupID)
	b = append(b, `,"data":`...)
	if b, err = appendRaw(b, t.Data); err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	b = append(b, `,"status":`...)
	b = appendString(b, string(t.Status))
	b = append(b, `,"created_at":`...)
	if b, err = appendJSONTime(b, t.CreatedAt); err != nil {
		return nil, fmt.Errorf("created_at: %w", err)
	}
	b = append(b, `,"completed_at":`...)
	if t.CompletedAt == nil {
		b = append(b, "null"...)
	} else if b, err = appendJSONTime(b, *t.CompletedAt); err != nil {
		return nil, fmt.Errorf("completed_at: %w", err)
	}
	b = append(b, `,"result":`...)
	if b, err = appendRaw(b, t.Result); err != nil {
		return nil, fmt.Errorf("result: %w", err)
	}
	b = append(b, `,"error":`...)
	b = appendStringPtr(b, t.Error)
	b = append(b, `,"message":`...)
	b = appendStringPtr(b, t.Message)
	b = append(b, `,"async":`...)
	b = strconv.AppendBool(b, t.Async)
	b = append(b, `,"attempts":`...)
	b = strconv.AppendInt(b, int64(t.Attempts), 10)
	if t.Rescues != 0 {
		b = append(b, `,"rescues":`...)
		b = strconv.AppendInt(b, int64(t.Rescues), 10)
	}
	return append(b, '}'), nil
}

// appendString appends s as a JSON string. Printable ASCII other than a
// quote or a backslash goes as it is; anything else, rare in the ids and
// names a task holds, is left to encoding/json.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			q, _ := jsonenc.Marshal(s) // a string always encodes
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// appendStringPtr appends *s as a JSON string, or null.
func appendStringPtr(b []byte, s *string) []byte {
	if s == nil {
		return append(b, "null"...)
	}
	return appendString(b, *s)
}

// appendRaw appends raw JSON compacted, or null when there is none, as
// encoding/json does with a json.RawMessage.
func appendRaw(b []byte, raw json.RawMessage) ([]byte, error) {
	if raw == nil {
		return append(b, "null"...), nil
	}
	buf := bytes.NewBuffer(b)
	if err := json.Compact(buf, raw); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// appendJSONTime appends t as time.Time's MarshalJSON does.
func appendJSONTime(b []byte, t time.Time) ([]byte, error) {
	b = append(b, '"')
	b, err := t.AppendText(b)
	if err != nil {
		return nil, err
	}
	return append(b, '"'), nil
}

// jsonSize is about the length of t's JSON, unless its strings need
// escaping: the names, the brackets, two times and the numbers.
func (t *Task) jsonSize() int {
	n := 240 + len(t.RequestID) + len(t.AccountID) + len(t.Action) + len(t.Type) +
		len(t.TaskID) + len(t.GroupID) + len(t.Data) + len(t.Status) + len(t.Result)
	if t.Error != nil {
		n += len(*t.Error)
	}
	if t.Message != nil {
		n += len(*t.Message)
	}
	return n
}
