package api

import (
	"encoding/json"
	"strings"
	"testing"
)

// FuzzDecodeTaskBody feeds arbitrary bytes to the checks and the decoding
// of a create body. They must never panic, and a body they accept has its
// keys in exact case, a task_id and a group_id of 1 to 256 bytes and an
// object as data.
func FuzzDecodeTaskBody(f *testing.F) {
	for _, s := range []string{
		panBody,
		`{"task_id":"t","group_id":"g","data":{}}`,
		`{"TASK_ID":"t","group_id":"g","data":{}}`,
		`{"task_id":"t","group_id":"g","data":{},"Task_Id":"u"}`,
		`{"taſk_id":"t","group_id":"g","data":{}}`,
		`{"task\u005fid":"t","group_id":"g","data":{"A":[1,{"b":"}"}]}}`,
		`{"task_id":"t","group_id":"g","data":{},"colour":"red"}`,
		`{"task_id":5}`, `[1]`, `{`, `"\`, "{\"task_id\":\"\xff\"}",
	} {
		f.Add([]byte(s))
	}
	known := []string{"task_id", "group_id", "data"}
	f.Fuzz(func(t *testing.T, body []byte) {
		if checkJSON(body) != nil {
			return
		}
		in, e := decodeCreateBody(body)
		if e != nil {
			if e.Status != 400 && e.Status != 422 {
				t.Fatalf("%s: %d %s", body, e.Status, e.Code)
			}
			return
		}
		var keys map[string]json.RawMessage
		if err := json.Unmarshal(body, &keys); err != nil {
			t.Fatalf("%s accepted, but is not an object: %v", body, err)
		}
		for k := range keys {
			for _, name := range known {
				if k != name && strings.EqualFold(k, name) {
					t.Fatalf("%s accepted with key %q for %q", body, k, name)
				}
			}
		}
		if in.TaskID == nil || len(*in.TaskID) == 0 || len(*in.TaskID) > MaxIDLength ||
			in.GroupID == nil || len(*in.GroupID) == 0 || len(*in.GroupID) > MaxIDLength ||
			len(in.Data) == 0 || in.Data[0] != '{' {
			t.Fatalf("%s accepted as %+v", body, in)
		}
	})
}
