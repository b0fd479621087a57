package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// statusOf reads GET /v3/status and returns the entry of the task type.
func statusOf(t *testing.T, c taskClient, taskType string) (state, message string) {
	t.Helper()
	r := c.s.get(t, c.url("/v3/status"), c.header(nil))
	if r.status != http.StatusOK {
		t.Fatalf("GET /v3/status: %d %s", r.status, r.body)
	}
	var v struct {
		TaskTypes []struct {
			TaskType string `json:"task_type"`
			State    string `json:"state"`
			Message  string `json:"message"`
		} `json:"task_types"`
	}
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatal(err)
	}
	for _, e := range v.TaskTypes {
		if e.TaskType == taskType {
			return e.State, e.Message
		}
	}
	t.Fatalf("GET /v3/status lacks %s: %s", taskType, r.body)
	return "", ""
}

// TestMaintenanceWindow schedules a source's downtime with the CLI: its
// tasks then fail SOURCE_DOWN with the window's message at once, without
// a call to the source, /v3/status and the metrics say so, and once the
// window is cancelled tasks complete again.
func TestMaintenanceWindow(t *testing.T) {
	t.Parallel()
	src := okSource(t)
	port := freePort(t)
	s := newServer(t)
	s.start(config{Global: fmt.Sprintf(`
taskgate {
	storage %s
	%s
	task_type mw/pan {
		source %s/pan
	}
}`, s.storageOption("bolt"), hookAccount("mw"), src.url), Sites: taskSite(port)})
	c := hookClient(s, port, "mw")
	addr := []string{"--address", s.adminAddr}
	const message = "NSDL is under maintenance until 02:00 IST"

	out, errOut, code := taskgateCmd(t, s.dir, append([]string{"maintenance", "add", "mw/pan", "--for", "1h", "--message", message}, addr...)...)
	if code != 0 || !strings.Contains(out, "Scheduled mw_") {
		t.Fatalf("maintenance add: exit %d\n%s%s", code, out, errOut)
	}
	id := strings.Fields(strings.TrimPrefix(out, "Scheduled "))[0]
	id = strings.TrimSuffix(id, ":")
	if state, msg := statusOf(t, c, "mw/pan"); state != "maintenance" || msg != message {
		t.Errorf("status %q %q, want maintenance with the message", state, msg)
	}
	calls := len(src.received())
	tk := c.waitTerminal(t, c.createAsync(t, "mw/pan", "t-1", "g", `{}`))
	if tk.Status != "failed" || tk.Error == nil || *tk.Error != "SOURCE_DOWN" || tk.Message == nil || *tk.Message != message {
		t.Errorf("task during maintenance: %+v, want SOURCE_DOWN with the window's message", tk)
	}
	if got := len(src.received()); got != calls {
		t.Errorf("the source was called %d times during its maintenance", got-calls)
	}
	m, _ := s.metrics(t, "taskgate_sources_maintenance")
	if m[`taskgate_sources_maintenance{task_type="mw/pan"}`] != 1 {
		t.Errorf("taskgate_sources_maintenance = %v, want 1 for mw/pan", m)
	}
	out, _, code = taskgateCmd(t, s.dir, append([]string{"maintenance", "list"}, addr...)...)
	if code != 0 || !strings.Contains(out, id) || !strings.Contains(out, "yes") {
		t.Errorf("maintenance list: exit %d\n%s", code, out)
	}

	if _, errOut, code := taskgateCmd(t, s.dir, append([]string{"maintenance", "add", "nope/nope", "--for", "1h", "--message", "m"}, addr...)...); code == 0 || !strings.Contains(errOut, "not a configured task type") {
		t.Errorf("maintenance of an unknown type: exit %d, %q", code, errOut)
	}
	if out, errOut, code := taskgateCmd(t, s.dir, append([]string{"maintenance", "remove", id}, addr...)...); code != 0 || !strings.Contains(out, "Cancelled "+id) {
		t.Fatalf("maintenance remove: exit %d\n%s%s", code, out, errOut)
	}
	if state, _ := statusOf(t, c, "mw/pan"); state != "up" {
		t.Errorf("status after the window %q, want up", state)
	}
	if tk := c.waitTerminal(t, c.createAsync(t, "mw/pan", "t-2", "g", `{}`)); tk.Status != "completed" {
		t.Errorf("task after the window: %s, want completed", tk.Status)
	}
}

// TestMaintenanceAcrossNodes checks that a window scheduled on one node
// holds on the other within the refresh (2 s) on a shared Redis.
func TestMaintenanceAcrossNodes(t *testing.T) {
	t.Parallel()
	src := okSource(t)
	rs := startRedis(t)
	nodes := startNodes(t, 2, redisGlobal(rs, fmt.Sprintf(`
%s
task_type mw/pan {
	source %s/pan
}`, hookAccount("mw"), src.url)))
	r := adminCall(t, nodes[0].server, http.MethodPost, "/taskgate/maintenance",
		fmt.Sprintf(`{"task_type":"mw/pan","until":%q,"message":"down for an upgrade"}`, time.Now().Add(time.Hour).UTC().Format(time.RFC3339)))
	if r.status != http.StatusCreated {
		t.Fatalf("POST /taskgate/maintenance: %d %s", r.status, r.body)
	}
	c := nodes[1].client("mw", "key-mw")
	start := time.Now()
	deadline := time.After(15 * time.Second)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if state, _ := statusOf(t, c, "mw/pan"); state == "maintenance" {
			break
		}
		select {
		case <-deadline:
			t.Fatal("node 2 never saw the window node 1 scheduled")
		case <-tick.C:
		}
	}
	t.Logf("node 2 saw the window %v after node 1 scheduled it", time.Since(start).Round(time.Millisecond))
}
