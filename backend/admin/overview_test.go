package admin

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/taskgate/taskgate/backend/api"
	"github.com/taskgate/taskgate/backend/node"
	"github.com/taskgate/taskgate/backend/task"
	"github.com/taskgate/taskgate/backend/webhook"
)

// overviewFixture has two dynamic accounts, acme and beta, each with a
// task of task id "t1" in group "g1" whose webhook failed for good.
func overviewFixture(t *testing.T) (*fixture, map[string]*task.Task) {
	f := newFixture(t)
	typ := &task.Type{Action: "verify_with_source", Type: "ind_pan", Source: "http://127.0.0.1:9/", Concurrency: 1}
	svc := task.NewService(task.ServiceConfig{Store: f.store, Hub: task.NewHub()})
	f.handler.Client = &api.API{Service: svc, Types: map[string]*task.Type{pan: typ}, MaxBody: 1 << 20, Deliveries: f.store}
	ctx := t.Context()
	now := f.clock.Now()
	created := map[string]*task.Task{}
	for _, id := range []string{"acme", "beta"} {
		f.do("POST", "/taskgate/accounts", `{"id":"`+id+`","name":"`+id+`"}`, http.StatusCreated, nil)
		c, _, err := svc.Create(ctx, task.NewTask{AccountID: id, Type: typ, TaskID: "t1", GroupID: "g1", Data: json.RawMessage(`{}`), Async: true})
		if err != nil {
			t.Fatal(err)
		}
		created[id] = c
		claimed, err := f.store.Claim(ctx, pan, 1, now.Add(time.Minute))
		if err != nil || len(claimed) != 1 {
			t.Fatalf("claim: %v, %v", claimed, err)
		}
		done := claimed[0]
		at := now
		done.Status, done.CompletedAt = task.Completed, &at
		d := &webhook.Delivery{ID: "msg_" + id, AccountID: id, RequestID: c.RequestID, URL: "https://hooks.example/" + id,
			Event: "task.finished", Body: json.RawMessage(`{}`), Status: webhook.Pending, CreatedAt: now, NextAt: now}
		if err := f.store.Finish(ctx, done, []*webhook.Delivery{d}, nil); err != nil {
			t.Fatal(err)
		}
		ds, err := f.store.ClaimDeliveries(ctx, now, 1, now.Add(time.Minute), nil)
		if err != nil || len(ds) != 1 {
			t.Fatalf("claim deliveries: %v, %v", ds, err)
		}
		ds[0].Status = webhook.Failed
		ds[0].Attempts = append(ds[0].Attempts, webhook.Attempt{At: now, StatusCode: 500, Error: "HTTP 500"})
		if err := f.store.RecordAttempt(ctx, ds[0], nil); err != nil {
			t.Fatal(err)
		}
		now = now.Add(time.Second)
	}
	return f, created
}

func TestFindTasksAcrossAccounts(t *testing.T) {
	f, created := overviewFixture(t)
	var found TaskList
	f.do("GET", "/taskgate/tasks?request_id="+created["beta"].RequestID, "", http.StatusOK, &found)
	if len(found.Tasks) != 1 || found.Tasks[0].AccountID != "beta" || found.Tasks[0].RequestID != created["beta"].RequestID {
		t.Fatalf("by request id: %+v", found)
	}
	f.do("GET", "/taskgate/tasks?task_id=t1", "", http.StatusOK, &found)
	if len(found.Tasks) != 2 || found.Tasks[0].AccountID != "acme" || found.Tasks[1].AccountID != "beta" {
		t.Fatalf("by task id: %+v", found)
	}
	f.do("GET", "/taskgate/tasks?group_id=g1&account_id=acme", "", http.StatusOK, &found)
	if len(found.Tasks) != 1 || found.Tasks[0].AccountID != "acme" || found.Tasks[0].Status != task.Completed {
		t.Fatalf("by group, one account: %+v", found)
	}
	f.do("GET", "/taskgate/tasks?request_id=nothing", "", http.StatusOK, &found)
	if len(found.Tasks) != 0 {
		t.Fatalf("unknown request id: %+v", found)
	}
	f.do("GET", "/taskgate/tasks", "", http.StatusBadRequest, nil)
	f.do("GET", "/taskgate/tasks?request_id=a&task_id=b", "", http.StatusBadRequest, nil)
	f.do("GET", "/taskgate/tasks?task_id=t1&account_id=nobody", "", http.StatusNotFound, nil)
}

func TestFailedDeliveriesAcrossAccountsAndTheirRetry(t *testing.T) {
	f, _ := overviewFixture(t)
	var list DeliveryList
	f.do("GET", "/taskgate/deliveries", "", http.StatusOK, &list)
	if len(list.Deliveries) != 2 || list.Truncated || list.Deliveries[0].AccountID != "beta" || list.Deliveries[1].ID != "msg_acme" {
		t.Fatalf("failed deliveries, newest first: %+v", list)
	}
	if a := list.Deliveries[1].Attempts; len(a) != 1 || a[0].StatusCode == nil || *a[0].StatusCode != 500 {
		t.Fatalf("attempts %+v", a)
	}
	f.do("GET", "/taskgate/deliveries?limit=1", "", http.StatusOK, &list)
	if len(list.Deliveries) != 1 || !list.Truncated {
		t.Fatalf("limit 1: %+v", list)
	}
	f.do("GET", "/taskgate/deliveries?status=delivered", "", http.StatusOK, &list)
	if len(list.Deliveries) != 0 {
		t.Fatalf("delivered: %+v", list)
	}
	f.do("GET", "/taskgate/deliveries?status=lost", "", http.StatusBadRequest, nil)
	f.do("GET", "/taskgate/deliveries?limit=0", "", http.StatusBadRequest, nil)

	woken := 0
	f.handler.Client.WakeDeliveries = func() { woken++ }
	var res RetryResult
	f.do("POST", "/taskgate/deliveries/retry", `{"deliveries":[{"account_id":"acme","id":"msg_acme"},{"account_id":"acme","id":"msg_beta"},{"account_id":"beta","id":"msg_beta"}]}`, http.StatusOK, &res)
	if len(res.Retried) != 2 || res.Retried[0].Status != webhook.Pending || len(res.Errors) != 1 || res.Errors[0].ID != "msg_beta" || res.Errors[0].Error != "NOT_FOUND" {
		t.Fatalf("retry: %+v", res)
	}
	if woken != 1 {
		t.Errorf("the dispatcher was woken %d times, want once", woken)
	}
	f.do("GET", "/taskgate/deliveries", "", http.StatusOK, &list)
	if len(list.Deliveries) != 0 {
		t.Fatalf("failed after the retry: %+v", list)
	}
	f.do("POST", "/taskgate/deliveries/retry", `{"deliveries":[]}`, http.StatusBadRequest, nil)
	f.do("POST", "/taskgate/deliveries/retry", `{"ids":[]}`, http.StatusBadRequest, nil)
}

func TestSourcesAndNodes(t *testing.T) {
	f := newFixture(t)
	var sources SourceList
	f.do("GET", "/taskgate/sources", "", http.StatusOK, &sources)
	if sources.Sources == nil || len(sources.Sources) != 0 {
		t.Fatalf("no sources: %+v", sources)
	}
	f.handler.Sources = func(context.Context) []SourceView { return []SourceView{{TaskType: pan, State: "up"}} }
	f.do("GET", "/taskgate/sources", "", http.StatusOK, &sources)
	if len(sources.Sources) != 1 || sources.Sources[0].TaskType != pan {
		t.Fatalf("sources: %+v", sources)
	}
	f.do("GET", "/taskgate/nodes", "", http.StatusNotFound, nil)
	p := node.New(node.Config{})
	f.handler.Nodes = p.List
	var nodes NodeList
	f.do("GET", "/taskgate/nodes", "", http.StatusOK, &nodes)
	if len(nodes.Nodes) != 1 || !nodes.Nodes[0].Self {
		t.Fatalf("nodes: %+v", nodes)
	}
	f.do("POST", "/taskgate/nodes", "", http.StatusMethodNotAllowed, nil)
}
