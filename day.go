package throttle

import (
	"sync/atomic"
	"time"
)

// calendarDay is one calendar day in the limiter's time zone: its date as
// it appears in keys, and when it ends.
type calendarDay struct {
	start, end time.Time
	date       [len(time.DateOnly)]byte
}

// dayCache keeps the current calendar day, so the hot path formats a date
// and computes a midnight once a day rather than on every request.
type dayCache struct {
	current atomic.Pointer[calendarDay]
}

// day returns the calendar day of t, which must be in the limiter's location.
func (c *dayCache) day(t time.Time) *calendarDay {
	if d := c.current.Load(); d != nil && !t.Before(d.start) && t.Before(d.end) {
		return d
	}
	y, m, dd := t.Date()
	d := &calendarDay{
		start: time.Date(y, m, dd, 0, 0, 0, 0, t.Location()),
		// time.Date normalises day dd+1, and handles days of 23 or 25 hours.
		end: time.Date(y, m, dd+1, 0, 0, 0, 0, t.Location()),
	}
	t.AppendFormat(d.date[:0], time.DateOnly)
	c.current.Store(d)
	return d
}
