package benchmarks

import (
	"context"
	"testing"

	"github.com/go-chi/httprate"
	golimiter "github.com/sethvargo/go-limiter"
	"github.com/sethvargo/go-limiter/memorystore"
	"github.com/throttled/throttled/v2"
	"github.com/throttled/throttled/v2/store/memstore"
	ulule "github.com/ulule/limiter/v3"
	ululememory "github.com/ulule/limiter/v3/drivers/store/memory"
)

// decide makes one rate limit decision for key and reports whether it was
// allowed. Each library is wrapped in one, so every scenario drives all
// libraries through the same loop. The indirect call costs each of them the
// same.
type decide func(key string) (allowed bool, err error)

// deciderSource returns a decide for one goroutine. Most libraries are safe
// to share, so their source returns the same function every time. A library
// whose decision call needs per-goroutine scratch state builds it here.
type deciderSource func() decide

// shared wraps a goroutine-safe decide as a deciderSource.
func shared(d decide) deciderSource {
	return func() decide { return d }
}

// newGoLimiterStore builds a sethvargo/go-limiter in-memory store. The store
// runs a sweeper goroutine, so it is closed when the benchmark ends.
func newGoLimiterStore(b *testing.B) golimiter.Store {
	b.Helper()
	store, err := memorystore.New(&memorystore.Config{Tokens: hugeLimit, Interval: window})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := store.Close(context.Background()); err != nil {
			b.Error(err)
		}
	})
	return store
}

func goLimiterDecider(b *testing.B) deciderSource {
	store := newGoLimiterStore(b)
	ctx := context.Background()
	return shared(func(key string) (bool, error) {
		_, _, _, ok, err := store.Take(ctx, key)
		return ok, err
	})
}

// newUluleMemoryLimiter builds a ulule limiter on its in-memory store with the
// store's default options.
func newUluleMemoryLimiter() *ulule.Limiter {
	return ulule.New(ululememory.NewStore(), ulule.Rate{Period: window, Limit: hugeLimit})
}

func ululeDecider(lim *ulule.Limiter) deciderSource {
	ctx := context.Background()
	return shared(func(key string) (bool, error) {
		res, err := lim.Get(ctx, key)
		return !res.Reached, err
	})
}

// throttledMaxKeys bounds the throttled memstore with its LRU. A bounded store
// is what a service facing untrusted keys has to run, and the bound is far
// above keyCount, so no key is evicted during a run.
const throttledMaxKeys = 65_536

// newThrottledLimiter builds a throttled GCRA limiter on its in-memory store.
func newThrottledLimiter(b *testing.B) *throttled.GCRARateLimiterCtx {
	b.Helper()
	store, err := memstore.NewCtx(throttledMaxKeys)
	if err != nil {
		b.Fatal(err)
	}
	quota := throttled.RateQuota{MaxRate: throttled.PerHour(hugeLimit), MaxBurst: hugeLimit}
	lim, err := throttled.NewGCRARateLimiterCtx(store, quota)
	if err != nil {
		b.Fatal(err)
	}
	return lim
}

func throttledDecider(b *testing.B) deciderSource {
	lim := newThrottledLimiter(b)
	ctx := context.Background()
	return shared(func(key string) (bool, error) {
		limited, _, err := lim.RateLimitCtx(ctx, key, 1)
		return !limited, err
	})
}

// httprateDecider uses RateLimiter.OnLimit, the only call in httprate that
// decides for a given key. It always writes rate limit headers to a response
// writer, so each goroutine gets its own header sink and the header work is
// part of what is measured, as it is for any user of that call.
func httprateDecider() deciderSource {
	lim := httprate.NewRateLimiter(hugeLimit, window)
	return func() decide {
		w := newHeaderSink()
		r := keyRequest()
		return func(key string) (bool, error) {
			return !lim.OnLimit(w, r, key), nil
		}
	}
}
