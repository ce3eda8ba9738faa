package throttle

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Fault tests run a redis-server of their own on a free loopback port, and
// kill, pause and restart it while requests flow through Limiter.Handler.
// They stop only the process they started, by its pid.

// faultStoreTimeout is the store timeout of the fault tests, and
// faultLatencyMargin what a request may take beyond it on a loaded machine
// running the race detector. The timeout is the default one: a shorter one
// lets a healthy call time out now and then on a busy machine, which the
// tests would count as a fault.
const (
	faultStoreTimeout  = DefaultStoreTimeout
	faultLatencyMargin = 150 * time.Millisecond
)

// redisServerBinary returns the redis-server to run, from
// THROTTLE_REDIS_SERVER_BIN or PATH, and skips the test when there is none.
func redisServerBinary(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("THROTTLE_REDIS_SERVER_BIN"); bin != "" {
		return bin
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("no redis-server: set THROTTLE_REDIS_SERVER_BIN or put redis-server on PATH to run the fault tests")
	}
	return bin
}

// freeLoopbackPort returns a TCP port on 127.0.0.1 that was free a moment
// ago.
func freeLoopbackPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	require.NoError(t, ln.Close())
	return port
}

// redisProcess is a redis-server that the test started and owns.
type redisProcess struct {
	cmd *exec.Cmd
	// exited is closed when the process has exited and its output is read.
	exited chan struct{}
}

// startRedisServer starts redis-server on 127.0.0.1:port, saving nothing to
// disk, and returns once it accepts connections. The process is killed at
// the end of the test if it still runs.
func startRedisServer(t *testing.T, bin string, port int) *redisProcess {
	t.Helper()
	cmd := exec.Command(bin,
		"--bind", "127.0.0.1", "--port", strconv.Itoa(port),
		"--save", "", "--appendonly", "no", "--dir", t.TempDir())
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.Stderr = cmd.Stdout
	require.NoError(t, cmd.Start())

	p := &redisProcess{cmd: cmd, exited: make(chan struct{})}
	ready := make(chan struct{})
	go func() {
		defer close(p.exited)
		scanner := bufio.NewScanner(stdout)
		signalled := false
		for scanner.Scan() {
			if !signalled && strings.Contains(scanner.Text(), "Ready to accept connections") {
				close(ready)
				signalled = true
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
		_ = cmd.Wait()
	}()
	t.Cleanup(p.kill)

	select {
	case <-ready:
	case <-p.exited:
		t.Fatalf("redis-server on port %d exited during start-up", port)
	case <-time.After(10 * time.Second):
		t.Fatalf("redis-server on port %d was not ready within 10 seconds", port)
	}
	return p
}

// kill ends the process with SIGKILL, which works on a paused process
// too, and waits until it has exited. It is safe to call more than once.
func (p *redisProcess) kill() {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
}

// signal sends sig to the process.
func (p *redisProcess) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(sig))
}

// waitStopped waits until the kernel reports the process as stopped, after
// SIGSTOP, so that the requests that follow find it paused.
func (p *redisProcess) waitStopped(t *testing.T) {
	t.Helper()
	stat := fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid)
	assert.Eventually(t, func() bool {
		data, err := os.ReadFile(stat)
		if err != nil {
			return false
		}
		// The state follows the command name in parentheses.
		fields := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+1:]))
		return len(fields) > 0 && fields[0] == "T"
	}, 5*time.Second, 5*time.Millisecond)
}

// onceWriter is a ResponseWriter that counts the responses started on it:
// explicit WriteHeader calls, and a Write without one, which starts a 200.
type onceWriter struct {
	*httptest.ResponseRecorder
	headers int
}

func (w *onceWriter) WriteHeader(code int) {
	w.headers++
	w.ResponseRecorder.WriteHeader(code)
}

func (w *onceWriter) Write(p []byte) (int, error) {
	if w.headers == 0 {
		w.headers++
	}
	return w.ResponseRecorder.Write(p)
}

func (w *onceWriter) WriteString(s string) (int, error) {
	if w.headers == 0 {
		w.headers++
	}
	return w.ResponseRecorder.WriteString(s)
}

// faultResult is one request's outcome.
type faultResult struct {
	code       int
	headers    int
	retryAfter string
	elapsed    time.Duration
}

// driveTraffic sends n GET requests from clientAddr through handler, from
// workers goroutines at once, and returns their outcomes in no order.
func driveTraffic(handler http.Handler, n, workers int, clientAddr string) []faultResult {
	results := make([]faultResult, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				r := httptest.NewRequest(http.MethodGet, "/", nil)
				r.RemoteAddr = clientAddr
				w := &onceWriter{ResponseRecorder: httptest.NewRecorder()}
				start := time.Now()
				handler.ServeHTTP(w, r)
				results[i] = faultResult{
					code:       w.Code,
					headers:    w.headers,
					retryAfter: w.Header().Get("Retry-After"),
					elapsed:    time.Since(start),
				}
			}
		}()
	}
	wg.Wait()
	return results
}

// assertOutageResponses checks the responses sent while the store fails:
// one response each, by the failure policy, within the latency bound.
func assertOutageResponses(t *testing.T, results []faultResult, failClosed bool) {
	t.Helper()
	for i, res := range results {
		assert.Equal(t, 1, res.headers, "request %d got one response", i)
		if failClosed {
			assert.Equal(t, http.StatusServiceUnavailable, res.code, "request %d fails closed", i)
			assert.NotEmpty(t, res.retryAfter, "request %d has Retry-After", i)
		} else {
			assert.Equal(t, http.StatusOK, res.code, "request %d fails open", i)
		}
		assert.Less(t, res.elapsed, faultStoreTimeout+faultLatencyMargin, "request %d latency", i)
	}
}

// statusCounts returns how many results have each status code.
func statusCounts(results []faultResult) map[int]int {
	counts := map[int]int{}
	for _, res := range results {
		counts[res.code]++
	}
	return counts
}

// faultRig is a limiter on a redis-server that the test owns.
type faultRig struct {
	bin     string
	port    int
	server  *redisProcess
	client  *redis.Client
	clock   *ManualClock
	handler http.Handler
	// storeCalls counts the calls that reached the store, and openErrors
	// the requests that an open circuit kept from the store.
	storeCalls atomic.Int64
	openErrors atomic.Int64
}

// faultRate is the per-IP rate of the fault tests: high enough that the
// traffic before a fault is never denied, low enough to reach after.
var faultRate = PerMinute(120)

// newFaultRig starts a redis-server and a limiter on it with a per-IP
// throttle of faultRate, the default store timeout and a breaker on a manual
// clock, so that the circuit stays open until the test moves the clock.
func newFaultRig(t *testing.T, failClosed bool, fallback FallbackConfig) *faultRig {
	t.Helper()
	rig := &faultRig{bin: redisServerBinary(t), port: freeLoopbackPort(t), clock: NewManualClock(time.Now())}
	rig.server = startRedisServer(t, rig.bin, rig.port)
	rig.client = redis.NewClient(&redis.Options{
		Addr: fmt.Sprintf("127.0.0.1:%d", rig.port),
		// Without it go-redis waits for a reply for ReadTimeout, whatever
		// the context's deadline, and a paused server holds every request
		// for seconds.
		ContextTimeoutEnabled: true,
	})
	t.Cleanup(func() { rig.client.Close() })

	lim, err := New(Config{
		Store:        NewRedisStore(rig.client),
		Clock:        rig.clock,
		Throttles:    []Throttle{IPThrottle{Name: "ip", Rate: faultRate}},
		StoreTimeout: faultStoreTimeout,
		FailClosed:   failClosed,
		Fallback:     fallback,
		Hooks: Hooks{
			StoreCall: func(time.Duration, error) { rig.storeCalls.Add(1) },
			StoreError: func(e Event) {
				if errors.Is(e.Err, ErrCircuitOpen) {
					rig.openErrors.Add(1)
				}
			},
		},
	})
	require.NoError(t, err)
	rig.handler = lim.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}))
	return rig
}

// assertNoGoroutineLeak waits a bounded time for the goroutines started
// since baseline to end. It polls on the test's own goroutine, because a
// helper such as assert.Eventually runs its condition on goroutines of its
// own, which would be counted.
func assertNoGoroutineLeak(t *testing.T, baseline int) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	ticker := time.NewTicker(10 * time.Millisecond)
	defer ticker.Stop()
	for runtime.NumGoroutine() > baseline && time.Now().Before(deadline) {
		<-ticker.C
	}
	if n := runtime.NumGoroutine(); n > baseline {
		buf := make([]byte, 1<<16)
		t.Errorf("%d goroutines still run, %d before the test:\n%s", n, baseline, buf[:runtime.Stack(buf, true)])
	}
}

// faultPolicies names the failure policies the fault tests run under.
var faultPolicies = []struct {
	name       string
	failClosed bool
}{
	{"fail open", false},
	{"fail closed", true},
}

func TestFaultRedisKilled(t *testing.T) {
	for _, policy := range faultPolicies {
		t.Run(policy.name, func(t *testing.T) {
			baseline := runtime.NumGoroutine()
			rig := newFaultRig(t, policy.failClosed, FallbackConfig{})

			before := driveTraffic(rig.handler, 50, 4, "198.51.100.10:1000")
			assert.Equal(t, map[int]int{http.StatusOK: 50}, statusCounts(before))

			// Kill the server while requests are in flight.
			var wg sync.WaitGroup
			wg.Add(1)
			var during []faultResult
			go func() {
				defer wg.Done()
				during = driveTraffic(rig.handler, 100, 4, "198.51.100.10:1000")
			}()
			rig.server.kill()
			wg.Wait()
			after := driveTraffic(rig.handler, 200, 4, "198.51.100.10:1000")

			for i, res := range during {
				assert.Equal(t, 1, res.headers, "request %d during the kill got one response", i)
				assert.Less(t, res.elapsed, faultStoreTimeout+faultLatencyMargin, "request %d during the kill", i)
			}
			assertOutageResponses(t, after, policy.failClosed)
			assert.Positive(t, rig.openErrors.Load(), "the circuit opened")
			calls := rig.storeCalls.Load()
			driveTraffic(rig.handler, 50, 4, "198.51.100.10:1000")
			assert.Equal(t, calls, rig.storeCalls.Load(), "an open circuit makes no store call")

			rig.client.Close()
			assertNoGoroutineLeak(t, baseline)
		})
	}
}

func TestFaultRedisPaused(t *testing.T) {
	for _, policy := range faultPolicies {
		t.Run(policy.name, func(t *testing.T) {
			baseline := runtime.NumGoroutine()
			rig := newFaultRig(t, policy.failClosed, FallbackConfig{})

			before := driveTraffic(rig.handler, 50, 4, "198.51.100.20:1000")
			assert.Equal(t, map[int]int{http.StatusOK: 50}, statusCounts(before))

			rig.server.signal(t, syscall.SIGSTOP)
			rig.server.waitStopped(t)
			callsBefore := rig.storeCalls.Load()
			paused := driveTraffic(rig.handler, 200, 4, "198.51.100.20:1000")

			assertOutageResponses(t, paused, policy.failClosed)
			var slowest time.Duration
			slow := 0
			for _, res := range paused {
				slowest = max(slowest, res.elapsed)
				if res.elapsed >= faultStoreTimeout {
					slow++
				}
			}
			t.Logf("while paused: %d of %d requests waited for the store timeout, the slowest %v", slow, len(paused), slowest)
			assert.GreaterOrEqual(t, slow, DefaultBreakerFailures, "the calls that opened the circuit timed out")
			waited := rig.storeCalls.Load() - callsBefore
			assert.LessOrEqual(t, waited, int64(DefaultBreakerFailures+4), "only the calls before the circuit opened, and those in flight then, waited")
			assert.GreaterOrEqual(t, rig.openErrors.Load(), int64(200-DefaultBreakerFailures-4), "later requests did not wait")

			// Resume the server and let the breaker probe it: limiting
			// resumes, and the IP reaches its limit again.
			rig.server.signal(t, syscall.SIGCONT)
			rig.clock.Advance(DefaultBreakerCoolDown)
			resumed := driveTraffic(rig.handler, int(faultRate.Limit)+10, 1, "198.51.100.21:1000")
			counts := statusCounts(resumed)
			assert.Equal(t, int(faultRate.Limit), counts[http.StatusOK])
			assert.Equal(t, 10, counts[http.StatusTooManyRequests])

			rig.client.Close()
			rig.server.kill()
			assertNoGoroutineLeak(t, baseline)
		})
	}
}

func TestFaultRedisRestarted(t *testing.T) {
	for _, policy := range faultPolicies {
		t.Run(policy.name, func(t *testing.T) {
			baseline := runtime.NumGoroutine()
			rig := newFaultRig(t, policy.failClosed, FallbackConfig{})

			limited := driveTraffic(rig.handler, int(faultRate.Limit)+5, 1, "198.51.100.30:1000")
			assert.Equal(t, 5, statusCounts(limited)[http.StatusTooManyRequests], "limiting works before the restart")

			rig.server.kill()
			down := driveTraffic(rig.handler, 100, 4, "198.51.100.30:1000")
			assertOutageResponses(t, down, policy.failClosed)

			// A new server on the same port starts with no counters.
			// Until the cool-down passes, the circuit stays open.
			rig.server = startRedisServer(t, rig.bin, rig.port)
			stillOpen := driveTraffic(rig.handler, 20, 4, "198.51.100.30:1000")
			assertOutageResponses(t, stillOpen, policy.failClosed)

			rig.clock.Advance(DefaultBreakerCoolDown)
			resumed := driveTraffic(rig.handler, int(faultRate.Limit)+5, 1, "198.51.100.30:1000")
			for i, res := range resumed {
				assert.Equal(t, 1, res.headers, "request %d after the restart got one response", i)
			}
			counts := statusCounts(resumed)
			assert.Equal(t, int(faultRate.Limit), counts[http.StatusOK], "the counters start again on the new server")
			assert.Equal(t, 5, counts[http.StatusTooManyRequests], "a 429 appears again once the limit is hit")

			rig.client.Close()
			rig.server.kill()
			assertNoGoroutineLeak(t, baseline)
		})
	}
}

func TestFaultFallbackPerInstance(t *testing.T) {
	baseline := runtime.NumGoroutine()
	bin := redisServerBinary(t)
	port := freeLoopbackPort(t)
	server := startRedisServer(t, bin, port)
	client := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port), ContextTimeoutEnabled: true})
	t.Cleanup(func() { client.Close() })

	// Two instances of a service share the Redis, each with a 10/minute
	// per-IP throttle and a fallback for two instances.
	var instances []http.Handler
	var fallbackErrors atomic.Int64
	for range 2 {
		lim, err := New(Config{
			Store:        NewRedisStore(client),
			Clock:        NewManualClock(time.Now()),
			Throttles:    []Throttle{IPThrottle{Name: "ip", Rate: PerMinute(10)}},
			StoreTimeout: faultStoreTimeout,
			Fallback:     FallbackConfig{Instances: 2},
			Hooks: Hooks{StoreError: func(e Event) {
				if e.Decision.Fallback {
					fallbackErrors.Add(1)
				}
			}},
		})
		require.NoError(t, err)
		instances = append(instances, lim.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, "ok")
		})))
	}
	server.kill()

	for i, handler := range instances {
		results := driveTraffic(handler, 12, 1, "198.51.100.40:1000")
		for j, res := range results {
			assert.Equal(t, 1, res.headers, "instance %d request %d got one response", i, j)
			assert.Less(t, res.elapsed, faultStoreTimeout+faultLatencyMargin, "instance %d request %d", i, j)
		}
		assert.Equal(t, map[int]int{http.StatusOK: 5, http.StatusTooManyRequests: 7}, statusCounts(results), "instance %d allows its share", i)
	}
	assert.Equal(t, int64(24), fallbackErrors.Load())

	client.Close()
	assertNoGoroutineLeak(t, baseline)
}
