package task

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/taskgate/taskgate/backend/account"
	"github.com/taskgate/taskgate/backend/webhook"
)

func TestDeliveries(t *testing.T) {
	now := time.Unix(1_700_000_000, 0).UTC()
	done := now
	tk := &Task{RequestID: "r1", AccountID: "acme", Action: "verify", Type: "pan", TaskID: "t", GroupID: "g", Status: Completed, CreatedAt: now, CompletedAt: &done, Result: json.RawMessage(`{"ok":true}`), Async: true}
	hooks := []account.Webhook{
		{URL: "https://a.example/all"},
		{URL: "https://a.example/pan", Types: []string{"verify/pan"}},
		{URL: "https://a.example/other", Types: []string{"verify/aadhaar"}},
	}
	ds := Deliveries(hooks, tk, now)
	if len(ds) != 2 || ds[0].URL != "https://a.example/all" || ds[1].URL != "https://a.example/pan" {
		t.Fatalf("deliveries to %v", ds)
	}
	want, _ := json.Marshal(tk.View())
	for _, d := range ds {
		if string(d.Body) != string(want) || d.Status != webhook.Pending || !d.NextAt.Equal(now) || d.AccountID != "acme" || d.RequestID != "r1" || d.Event != webhook.EventTask {
			t.Fatalf("delivery %+v", d)
		}
	}
	if ds[0].ID == ds[1].ID {
		t.Fatal("two deliveries share an id")
	}
	tk.Async = false
	if ds := Deliveries(hooks, tk, now); ds != nil {
		t.Fatalf("a sync task has deliveries: %v", ds)
	}
}
