package caddymodule

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/taskgate/taskgate/backend/engine"
)

// decisionsTotal counts the edge handlers' decisions by handler and
// outcome. The label sets are fixed: never an account id or a key.
var decisionsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
	Namespace: "taskgate",
	Subsystem: "edge",
	Name:      "decisions_total",
	Help:      "Decisions of the edge handlers, by handler and outcome.",
}, []string{"handler", "outcome"})

// registerMetrics adds taskgate's collectors (the edge handlers' and the
// engine's) to a config's registry. The collectors are process-wide, so
// counts go on across config reloads.
func registerMetrics(reg prometheus.Registerer) error {
	if reg == nil {
		return nil
	}
	for _, c := range append([]prometheus.Collector{decisionsTotal}, engine.Collectors()...) {
		err := reg.Register(c)
		var already prometheus.AlreadyRegisteredError
		if err != nil && !errors.As(err, &already) {
			return err
		}
	}
	return nil
}
