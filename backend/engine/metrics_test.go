package engine

import (
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/taskgate/taskgate/backend/task"
	"github.com/taskgate/taskgate/backend/webhook"
)

// counterValue reads the series of c whose label values are values, or 0.
func counterValue(t *testing.T, c prometheus.Collector, values ...string) float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			var got []string
			for _, l := range m.GetLabel() {
				got = append(got, l.GetValue())
			}
			if slices.Equal(got, values) {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func TestPanicsAndInternalErrorsAreCounted(t *testing.T) {
	beforeRunner := counterValue(t, panicsRecovered, "runner")
	beforeWebhooks := counterValue(t, panicsRecovered, "webhooks")
	observeTaskPanic(&task.Task{})
	observeAttemptPanic(&webhook.Delivery{})
	observeAttemptPanic(&webhook.Delivery{})
	if got := counterValue(t, panicsRecovered, "runner") - beforeRunner; got != 1 {
		t.Errorf("runner panics counted %v, want 1", got)
	}
	if got := counterValue(t, panicsRecovered, "webhooks") - beforeWebhooks; got != 2 {
		t.Errorf("webhooks panics counted %v, want 2", got)
	}

	code := task.InternalError
	before := counterValue(t, tasksFinished, "internal_error", "metrics/test")
	observeFinish(&task.Task{Action: "metrics", Type: "test", Status: task.Failed, Error: &code})
	if got := counterValue(t, tasksFinished, "internal_error", "metrics/test") - before; got != 1 {
		t.Errorf("tasks finished with %s counted %v as internal_error, want 1", code, got)
	}
}
