package benchmarks

import (
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/go-chi/httprate"
	"github.com/sethvargo/go-limiter/httplimit"
	"github.com/throttled/throttled/v2"
	"github.com/ulule/limiter/v3/drivers/middleware/stdlib"
)

// BenchmarkMiddleware serves one request through each library's net/http
// middleware in front of a handler that only writes status 200. The
// baseline serves the bare handler, so the difference to it is what the
// middleware adds. Every library keys on the client IP its own default way,
// because that parsing is part of what a user of the middleware pays for.
func BenchmarkMiddleware(b *testing.B) {
	b.Run("baseline", func(b *testing.B) { benchServe(b, bareHandler()) })
	b.Run("throttle", func(b *testing.B) { benchServeRequest(b, throttleMiddleware(b, bareHandler()), memberRequest(hotKey)) })
	b.Run("golimiter", func(b *testing.B) {
		mw, err := httplimit.NewMiddleware(newGoLimiterStore(b), httplimit.IPKeyFunc())
		if err != nil {
			b.Fatal(err)
		}
		benchServe(b, mw.Handle(bareHandler()))
	})
	b.Run("ulule", func(b *testing.B) {
		mw := stdlib.NewMiddleware(newUluleMemoryLimiter())
		benchServe(b, mw.Handler(bareHandler()))
	})
	b.Run("httprate", func(b *testing.B) {
		benchServe(b, httprate.LimitBy(hugeLimit, window, httprateClientIP)(bareHandler()))
	})
	b.Run("throttled", func(b *testing.B) {
		mw := &throttled.HTTPRateLimiterCtx{
			RateLimiter: newThrottledLimiter(b),
			VaryBy:      &throttled.VaryBy{RemoteAddr: true},
		}
		benchServe(b, mw.RateLimit(bareHandler()))
	})
}

// bareHandler writes status 200 with no body.
func bareHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusOK)
	})
}

// httprateClientIP keys httprate on the client IP. httprate leaves resolving
// the IP to its caller and offers CanonicalizeIP for the result, so this is
// the key function its documentation tells users to write.
func httprateClientIP(r *http.Request) (string, error) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return "", err
	}
	return httprate.CanonicalizeIP(host), nil
}

// benchServe serves the same pre-built request through h once per iteration.
// Every iteration gets a new httptest.ResponseRecorder, for the baseline and
// for every library alike. A reused recorder would keep the headers the
// middleware wrote before, and a real server never hands a handler such a
// warmed header map. The recorder's own cost is the same for all and shows up
// in the baseline.
func benchServe(b *testing.B, h http.Handler) {
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.RemoteAddr = remoteAddr
	benchServeRequest(b, h, req)
}

// benchServeRequest is benchServe with a given request. throttle needs one
// that carries an identity, which its caller's authentication would store;
// the request is built before the timer starts, as the others are.
func benchServeRequest(b *testing.B, h http.Handler, req *http.Request) {
	// The first request creates the client's limiter state before the timer
	// starts, as in the other scenarios.
	serveOnce(b, h, req)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		serveOnce(b, h, req)
	}
}

func serveOnce(b *testing.B, h http.Handler, req *http.Request) {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		b.Fatalf("status %d, expected %d: the limit is never reached", rec.Code, http.StatusOK)
	}
}
