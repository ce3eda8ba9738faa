package throttle

import (
	"encoding/json"
	"net/http"
	"time"
)

// usageReport is the body of the usage handler's response.
type usageReport struct {
	// Resources maps each applicable throttle's scope to the caller's usage
	// of it. Empty for a bypassed caller.
	Resources map[string]usageResource `json:"resources"`
	// Bypass is the reason the caller skips every throttle, such as
	// "staff", or empty.
	Bypass Bypass `json:"bypass"`
}

// usageResource is a caller's usage of one throttle.
type usageResource struct {
	Limit     int64 `json:"limit"`
	Remaining int64 `json:"remaining"`
	Used      int64 `json:"used"`
	// Reset is when the counter is back to its full limit, in Unix seconds
	// rounded up.
	Reset int64 `json:"reset"`
	// Window is the throttle's period in seconds; 86400 for a daily quota.
	Window int64 `json:"window"`
	// Shadow marks a throttle in shadow mode, which reports but never denies.
	Shadow bool `json:"shadow,omitempty"`
}

// UsageHandler returns a handler that sends the caller of each request its
// usage of every throttle that would apply to it under opts, without
// counting the request: the library's counterpart of GitHub's
// GET /rate_limit. It reads the caller as the middleware does and calls
// Limiter.Usage. Mount it at a route of its own, outside the limiter's
// middleware, or the request to it is counted like any other:
//
//	mux.Handle("GET /rate_limit", lim.UsageHandler(throttle.Scope("search")))
//
// The options work as they do for Handler, so the report includes the
// endpoint scopes named with Scope. The response is JSON, such as
//
//	{"resources":{"burst":{"limit":10,"remaining":7,"used":3,"reset":1764844800,"window":60}},"bypass":""}
//
// where reset is the Unix time in seconds at which the counter is full
// again, window is the period in seconds, and a throttle in shadow mode
// has "shadow": true. A bypassed caller gets "bypass" set to "staff",
// "superuser" or "api_key" and no resources. The handler serves GET and
// HEAD, and sends 405 to other methods. When the store fails it answers 503 with
// Retry-After and no internal error text. Like Handler, it panics when opts
// name an endpoint scope that the policy has no rate for.
func (l *Limiter) UsageHandler(opts ...HandlerOption) http.Handler {
	// Resolving the options now panics on a bad one at start-up, as
	// Handler does, instead of on the first request.
	l.handlerConfig(opts)

	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Cache-Control", "no-store")
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", "GET, HEAD")
			writeUsageJSON(w, http.StatusMethodNotAllowed, []byte(`{"detail": "Method not allowed. Use GET or HEAD."}`))
			return
		}

		d, err := l.Usage(r, opts...)
		if err != nil {
			h.Set(headerRetryAfter, unavailableRetryAfter)
			writeUsageJSON(w, http.StatusServiceUnavailable, []byte(`{"detail": "Rate limit usage is temporarily unavailable. Try again shortly."}`))
			return
		}

		body, err := json.Marshal(newUsageReport(d))
		if err != nil {
			// The report contains only integers, strings and booleans, so
			// marshaling cannot fail. If it does, the client gets no detail.
			writeUsageJSON(w, http.StatusInternalServerError, []byte(`{"detail": "Internal error."}`))
			return
		}
		writeUsageJSON(w, http.StatusOK, body)
	})
}

// newUsageReport turns a decision made without counting into the report.
func newUsageReport(d *Decision) usageReport {
	report := usageReport{Resources: make(map[string]usageResource, len(d.Statuses)), Bypass: d.Bypass}
	if d.Bypass != BypassNone {
		return report
	}
	for i := range d.Statuses {
		s := &d.Statuses[i]
		report.Resources[s.Scope] = usageResource{
			Limit:     s.Limit,
			Remaining: s.Remaining,
			Used:      max(s.Limit-s.Remaining, 0),
			Reset:     ceilUnix(s.Reset),
			Window:    int64(s.Period / time.Second),
			Shadow:    s.Shadow,
		}
	}
	return report
}

func writeUsageJSON(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(body)
}
