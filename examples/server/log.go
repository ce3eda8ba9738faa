package main

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/zumodra/throttle"
)

// requestLog collects what the limiter decided about one request, through
// the limiter's hooks, so that logRequests can write it in one line.
type requestLog struct {
	decision string
	scope    string
	tenant   string
	limit    int64
	remain   int64
}

type requestLogKey struct{}

func logFrom(ctx context.Context) *requestLog {
	entry, _ := ctx.Value(requestLogKey{}).(*requestLog)
	return entry
}

// hooks fill the request's log entry. They run on the request's goroutine.
func hooks() throttle.Hooks {
	note := func(decision string) func(throttle.Event) {
		return func(e throttle.Event) {
			entry := logFrom(e.Request.Context())
			if entry == nil {
				return
			}
			entry.decision = decision
			entry.tenant = e.Decision.Identity.TenantSlug()
			if e.Status.Scope != "" {
				entry.scope = e.Status.Scope
				entry.limit = e.Status.Limit
				entry.remain = e.Status.Remaining
			}
			if e.Decision.Bypass != throttle.BypassNone {
				entry.scope = string(e.Decision.Bypass)
			}
		}
	}
	return throttle.Hooks{
		Allowed:    note("allowed"),
		Denied:     note("denied"),
		Bypassed:   note("bypassed"),
		StoreError: note("store_error"),
	}
}

// statusRecorder remembers the status code a handler wrote.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

// logRequests writes one line per request: method, path, status, the
// limiter's decision and the throttle that decided it.
func logRequests(logger *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		entry := &requestLog{decision: "none"}
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rec, r.WithContext(context.WithValue(r.Context(), requestLogKey{}, entry)))
		if entry.decision == "denied" && rec.status == http.StatusOK {
			entry.decision = "shadow_denied"
		}
		logger.LogAttrs(r.Context(), slog.LevelInfo, "request",
			slog.String("method", r.Method),
			slog.String("path", r.URL.Path),
			slog.Int("status", rec.status),
			slog.String("decision", entry.decision),
			slog.String("scope", entry.scope),
			slog.String("tenant", entry.tenant),
			slog.Int64("limit", entry.limit),
			slog.Int64("remaining", entry.remain),
			slog.Duration("duration", time.Since(start)),
		)
	})
}
