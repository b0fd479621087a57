package caddymodule

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/taskgate/taskgate/backend/engine"
	"github.com/taskgate/taskgate/backend/ratelimit"
)

// decisionsTotal counts the edge handlers' decisions by handler and
// outcome. The label sets are fixed: never an account id or a key.
var decisionsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
	Namespace: "taskgate",
	Subsystem: "edge",
	Name:      "decisions_total",
	Help:      "Decisions of the edge handlers, by handler and outcome.",
}, []string{"handler", "outcome"})

// leaseTokens count the rate-limit tokens leased from Redis by this
// process, and those lost unused (backend/ratelimit.WithLeases).
var leaseTokens = []prometheus.Collector{
	prometheus.NewCounterFunc(prometheus.CounterOpts{
		Namespace: "taskgate",
		Subsystem: "rate_limit",
		Name:      "leased_tokens_total",
		Help:      "Rate-limit tokens this node leased from Redis for a busy account's next requests (storage redis).",
	}, func() float64 { leased, _ := ratelimit.LeaseTokens(); return float64(leased) }),
	prometheus.NewCounterFunc(prometheus.CounterOpts{
		Namespace: "taskgate",
		Subsystem: "rate_limit",
		Name:      "lease_tokens_lost_total",
		Help:      "Leased rate-limit tokens that expired unused: lost to the other nodes (storage redis).",
	}, func() float64 { _, lost := ratelimit.LeaseTokens(); return float64(lost) }),
}

// registerMetrics adds taskgate's collectors (the edge handlers' and the
// engine's) to a config's registry. The collectors are process-wide, so
// counts go on across config reloads.
func registerMetrics(reg prometheus.Registerer) error {
	if reg == nil {
		return nil
	}
	collectors := append(append([]prometheus.Collector{decisionsTotal}, leaseTokens...), engine.Collectors()...)
	for _, c := range collectors {
		err := reg.Register(c)
		var already prometheus.AlreadyRegisteredError
		if err != nil && !errors.As(err, &already) {
			return err
		}
	}
	return nil
}
