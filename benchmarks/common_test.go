package benchmarks

import (
	"context"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

// Every limiter allows hugeLimit requests per window of one hour. No
// benchmark run comes close to that count, so every decision takes the
// allowed path, which is the path these benchmarks compare.
const (
	hugeLimit = 1_000_000_000
	window    = time.Hour
)

// keyCount is the number of distinct keys used by the many-keys scenarios.
const keyCount = 10_000

// hotKey is the single key of the hot-key scenario.
const hotKey = "203.0.113.7"

// keys holds the distinct keys, built once so that building them is not part
// of any measurement.
var keys = func() []string {
	out := make([]string, keyCount)
	for i := range out {
		out[i] = "client-" + strconv.Itoa(i)
	}
	return out
}()

// startOffsets hands each parallel goroutine a different starting point in
// keys. Without it every goroutine would begin on the same key at the same
// moment, which measures contention on one key instead of spread-out load.
type startOffsets struct {
	next atomic.Uint64
}

// take returns the next starting index. The stride is prime to keyCount so
// that the starting points of up to keyCount goroutines never repeat.
func (s *startOffsets) take() int {
	return int((s.next.Add(1) * 7919) % keyCount)
}

// headerSink is a minimal http.ResponseWriter for limiters whose per-key
// decision call writes rate limit headers. It keeps one header map per
// goroutine so the measured cost is the limiter's own header work.
type headerSink struct {
	header http.Header
}

func newHeaderSink() *headerSink {
	return &headerSink{header: make(http.Header, 8)}
}

func (s *headerSink) Header() http.Header { return s.header }

func (s *headerSink) Write(p []byte) (int, error) { return len(p), nil }

func (s *headerSink) WriteHeader(int) {}

// keyRequest builds a GET request with a background context and the
// benchmark client address, for decision calls that take a request.
func keyRequest() *http.Request {
	r, err := http.NewRequestWithContext(context.Background(), http.MethodGet, "/", nil)
	if err != nil {
		panic(err)
	}
	r.RemoteAddr = remoteAddr
	return r
}

// remoteAddr is the client address of every benchmark request. It is in
// 203.0.113.0/24, a range reserved for documentation, so it names no real host.
const remoteAddr = "203.0.113.7:1234"
