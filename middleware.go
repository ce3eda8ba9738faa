package throttle

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"
)

// HandlerOption changes the throttles of one handler.
type HandlerOption func(*handlerOptions)

type handlerOptions struct {
	scopes []string
	bulk   bool
	with   []Throttle
	only   []Throttle
	isOnly bool
}

// Scope gives the handler the endpoint scopes named, so that their
// throttles (Policy.Scopes) apply to it besides the limiter's set. Handler
// panics if the policy has no rate for a name, as http.ServeMux does for a
// bad pattern, because that is a programming error found at start-up.
func Scope(names ...string) HandlerOption {
	return func(o *handlerOptions) { o.scopes = append(o.scopes, names...) }
}

// Bulk marks the handler as a bulk import or export, so that the plan's
// bulk rate (scope "bulk") applies to it besides the limiter's set.
func Bulk() HandlerOption {
	return func(o *handlerOptions) { o.bulk = true }
}

// With adds throttles to the handler's set.
func With(throttles ...Throttle) HandlerOption {
	return func(o *handlerOptions) { o.with = append(o.with, throttles...) }
}

// Only replaces the limiter's set with throttles for this handler. Scope,
// Bulk and With still add to it.
func Only(throttles ...Throttle) HandlerOption {
	return func(o *handlerOptions) { o.only, o.isOnly = append(o.only, throttles...), true }
}

// handlerConfig is the resolved throttle set of one handler.
type handlerConfig struct {
	throttles []Throttle
	scopes    []string
	bulk      bool
}

// handlerConfig resolves options into a throttle set, panicking on an
// invalid one.
func (l *Limiter) handlerConfig(opts []HandlerOption) *handlerConfig {
	if len(opts) == 0 {
		return &handlerConfig{throttles: l.cfg.Throttles}
	}
	var o handlerOptions
	for _, opt := range opts {
		opt(&o)
	}
	h := &handlerConfig{scopes: o.scopes, bulk: o.bulk}
	if o.isOnly {
		h.throttles = append(h.throttles, o.only...)
	} else {
		h.throttles = append(h.throttles, l.cfg.Throttles...)
	}
	for _, name := range o.scopes {
		t, ok := l.cfg.Policy.ScopeThrottle(name)
		if !ok {
			panic(fmt.Sprintf("throttle: endpoint scope %q has no rate in Policy.Scopes", name))
		}
		h.throttles = append(h.throttles, t)
	}
	if o.bulk {
		h.throttles = append(h.throttles, l.cfg.Policy.BulkThrottle())
	}
	h.throttles = append(h.throttles, o.with...)
	if err := validateThrottles(h.throttles); err != nil {
		panic(fmt.Sprintf("throttle: invalid handler throttles: %v", err))
	}
	return h
}

// Handler wraps next so that each request is checked before it is served.
// An allowed request gets the limit fields and reaches next. A denied one
// gets 429 with Retry-After and never reaches next. A bypassed one reaches
// next with no limit fields. When the store fails, the request is served
// uncounted, or gets 503 when Config.FailClosed is set, unless the
// local fallback decides it as a normal request.
func (l *Limiter) Handler(next http.Handler, opts ...HandlerOption) http.Handler {
	h := l.handlerConfig(opts)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d := decisionPool.Get().(*Decision)
		defer putDecision(d)

		l.decide(r, h, d, true)

		switch {
		case d.Err != nil && !d.Fallback && !d.Allowed:
			writeUnavailable(w)
		case !d.Allowed:
			l.deny(w, r, d)
		default:
			if !l.cfg.Shadow {
				writeHeaders(w.Header(), d)
			}
			next.ServeHTTP(w, r)
		}
	})
}

// Middleware returns Handler as a middleware, for routers that take
// func(http.Handler) http.Handler.
func (l *Limiter) Middleware(opts ...HandlerOption) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler { return l.Handler(next, opts...) }
}

var decisionPool = sync.Pool{New: func() any { return new(Decision) }}

func putDecision(d *Decision) {
	d.reset()
	decisionPool.Put(d)
}

// deny writes the 429 response.
func (l *Limiter) deny(w http.ResponseWriter, r *http.Request, d *Decision) {
	h := w.Header()
	writeHeaders(h, d)
	seconds := retryAfterSeconds(d.RetryAfter)
	h.Set(headerRetryAfter, strconv.FormatInt(seconds, 10))
	h.Set("Cache-Control", "no-store")

	if l.cfg.DenyHandler != nil {
		l.cfg.DenyHandler(w, r, d)
		return
	}
	if l.cfg.ProblemJSON {
		writeProblem(w, r, seconds)
		return
	}
	h.Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusTooManyRequests)
	fmt.Fprintf(w, `{"detail": "Request was throttled. Expected available in %s."}`, secondsText(seconds))
}

// secondsText returns "1 second" or "N seconds".
func secondsText(n int64) string {
	if n == 1 {
		return "1 second"
	}
	return strconv.FormatInt(n, 10) + " seconds"
}

// writeProblem writes an RFC 9457 problem details body for a denial.
func writeProblem(w http.ResponseWriter, r *http.Request, seconds int64) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(http.StatusTooManyRequests)
	instance, _ := json.Marshal(r.URL.Path)
	fmt.Fprintf(w, `{"type": "about:blank", "title": "Too Many Requests", "status": 429, "detail": "Request was throttled. Expected available in %s.", "instance": %s}`,
		secondsText(seconds), instance)
}

// unavailableRetryAfter is the Retry-After of a fail-closed 503, in seconds.
const unavailableRetryAfter = "1"

// writeUnavailable writes the 503 response of a request that fails closed. The body carries no
// internal error text.
func writeUnavailable(w http.ResponseWriter) {
	h := w.Header()
	h.Set(headerRetryAfter, unavailableRetryAfter)
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusServiceUnavailable)
	fmt.Fprint(w, `{"detail": "Rate limiting is temporarily unavailable. Try again shortly."}`)
}
