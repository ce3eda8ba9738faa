// Package throttleprom exports the decisions of a throttle.Limiter as
// Prometheus metrics, through the limiter's hooks.
//
// It is a module of its own, so that services that do not use Prometheus
// never build github.com/prometheus/client_golang. Create the metrics with
// New, chain their hooks in front of any hooks of your own, and serve the
// registry:
//
//	reg := prometheus.NewRegistry()
//	metrics, err := throttleprom.New(reg)
//	...
//	cfg.Hooks = metrics.Hooks(cfg.Hooks)
//	lim, err := throttle.New(cfg)
//	...
//	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
//
// The metrics are:
//
//   - throttle_requests_total{decision, scope}: decision is "allowed",
//     "denied", "shadow_denied" or "bypassed". An allowed request counts
//     once, under the scope of its most restrictive throttle ("" when no
//     throttle applied). A denial counts once per denying throttle, under
//     that throttle's scope, so a request that two throttles deny counts
//     twice. "shadow_denied" counts the denials of throttles in shadow mode
//     and of a limiter in shadow mode, which were reported but not enforced.
//     A bypassed request (staff, superuser, allowlisted API key) counts
//     once with scope "".
//   - throttle_near_limit_total{scope}: requests that brought a throttle's
//     use to the configured fraction of its limit (Config.NearLimit).
//   - throttle_store_errors_total: decisions made without the store, because
//     its call failed or the circuit breaker was open. The failure policy or
//     the local fallback decided them.
//   - throttle_store_duration_seconds: a histogram of the duration of each
//     store call, failed calls included. Calls the open circuit breaker
//     skipped are not observed.
//
// Tenants, users and client IPs are not labels: their number is unbounded,
// and each label value is a time series of its own. Use the Denied hook and
// Limiter.Denials for per-tenant figures. Scope values are bounded by the
// configured throttles.
package throttleprom

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/zumodra/throttle"
)

// The values of the decision label of throttle_requests_total.
const (
	DecisionAllowed      = "allowed"
	DecisionDenied       = "denied"
	DecisionShadowDenied = "shadow_denied"
	DecisionBypassed     = "bypassed"
)

// DefaultStoreDurationBuckets are the upper bounds, in seconds, of the
// throttle_store_duration_seconds buckets: from 100 µs, a Redis round trip
// on a local network, to 250 ms, beyond the default store timeout of 100 ms.
var DefaultStoreDurationBuckets = []float64{
	0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
}

// Option changes how New builds the metrics.
type Option func(*options)

type options struct {
	constLabels prometheus.Labels
	buckets     []float64
}

// WithConstLabels adds labels with fixed values to every metric, such as
// the name of the limiter when a service runs several.
func WithConstLabels(labels prometheus.Labels) Option {
	return func(o *options) { o.constLabels = labels }
}

// WithStoreDurationBuckets replaces DefaultStoreDurationBuckets.
func WithStoreDurationBuckets(buckets []float64) Option {
	return func(o *options) { o.buckets = buckets }
}

// Metrics counts a limiter's decisions. It is a prometheus.Collector, and
// safe for concurrent use.
type Metrics struct {
	requests      *prometheus.CounterVec
	nearLimit     *prometheus.CounterVec
	storeErrors   prometheus.Counter
	storeDuration prometheus.Histogram
}

var _ prometheus.Collector = (*Metrics)(nil)

// New creates the metrics and registers them with reg. A nil reg registers
// nothing, for callers that register the Metrics, a Collector, themselves.
// The error is the registry's, such as a prometheus.AlreadyRegisteredError
// when reg already has metrics of these names.
func New(reg prometheus.Registerer, opts ...Option) (*Metrics, error) {
	o := options{buckets: DefaultStoreDurationBuckets}
	for _, opt := range opts {
		opt(&o)
	}

	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name:        "throttle_requests_total",
			Help:        "Requests decided by the rate limiter, by decision and scope. Denials count once per denying throttle.",
			ConstLabels: o.constLabels,
		}, []string{"decision", "scope"}),
		nearLimit: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name:        "throttle_near_limit_total",
			Help:        "Requests that brought a throttle's use to the near-limit fraction of its limit, by scope.",
			ConstLabels: o.constLabels,
		}, []string{"scope"}),
		storeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name:        "throttle_store_errors_total",
			Help:        "Rate limit decisions made without the store, because its call failed or the circuit breaker was open.",
			ConstLabels: o.constLabels,
		}),
		storeDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:        "throttle_store_duration_seconds",
			Help:        "Duration of the rate limiter's store calls, failed calls included.",
			ConstLabels: o.constLabels,
			Buckets:     o.buckets,
		}),
	}
	if reg == nil {
		return m, nil
	}
	if err := reg.Register(m); err != nil {
		return nil, err
	}
	return m, nil
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	m.requests.Describe(ch)
	m.nearLimit.Describe(ch)
	m.storeErrors.Describe(ch)
	m.storeDuration.Describe(ch)
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.requests.Collect(ch)
	m.nearLimit.Collect(ch)
	m.storeErrors.Collect(ch)
	m.storeDuration.Collect(ch)
}

// Hooks returns hooks that update the metrics and then call the hooks of
// next that are set. Pass the result in throttle.Config.Hooks.
func (m *Metrics) Hooks(next throttle.Hooks) throttle.Hooks {
	return throttle.Hooks{
		Allowed: func(e throttle.Event) {
			m.requests.WithLabelValues(DecisionAllowed, e.Status.Scope).Inc()
			if next.Allowed != nil {
				next.Allowed(e)
			}
		},
		Denied: func(e throttle.Event) {
			decision := DecisionDenied
			if e.Status.Shadow || e.Decision != nil && e.Decision.ShadowDenied {
				decision = DecisionShadowDenied
			}
			m.requests.WithLabelValues(decision, e.Status.Scope).Inc()
			if next.Denied != nil {
				next.Denied(e)
			}
		},
		Bypassed: func(e throttle.Event) {
			m.requests.WithLabelValues(DecisionBypassed, "").Inc()
			if next.Bypassed != nil {
				next.Bypassed(e)
			}
		},
		NearLimit: func(e throttle.Event) {
			m.nearLimit.WithLabelValues(e.Status.Scope).Inc()
			if next.NearLimit != nil {
				next.NearLimit(e)
			}
		},
		StoreError: func(e throttle.Event) {
			m.storeErrors.Inc()
			if next.StoreError != nil {
				next.StoreError(e)
			}
		},
		StoreCall: func(elapsed time.Duration, err error) {
			m.storeDuration.Observe(elapsed.Seconds())
			if next.StoreCall != nil {
				next.StoreCall(elapsed, err)
			}
		},
	}
}
