package throttle

import (
	"sync"
	"time"
)

// Clock is a source of the current time. The memory store and the limiter read it instead of
// time.Now, so tests can move time forward without sleeping.
type Clock interface {
	Now() time.Time
}

// systemClock is the wall clock.
type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

// ManualClock is a Clock that moves only when a test moves it. Tests of handlers
// protected by a limiter use it to cross window boundaries instantly. The
// zero value reads as the zero time; a ManualClock is safe for concurrent use.
type ManualClock struct {
	// mu guards now.
	mu  sync.Mutex
	now time.Time
}

// NewManualClock returns a ManualClock that reads t until moved.
func NewManualClock(t time.Time) *ManualClock {
	return &ManualClock{now: t}
}

// Now returns the clock's current time.
func (c *ManualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d. A negative d moves it backwards,
// which tests use to check that a stepping clock never resets a counter.
func (c *ManualClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// Set moves the clock to t.
func (c *ManualClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}
