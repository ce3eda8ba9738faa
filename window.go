package throttle

// The sliding window used by every store.
//
// A counter of N requests per period P keeps at most windowBuckets+1
// buckets. Time is cut into slots of width w = ceil(P / windowBuckets); each
// bucket holds the number of requests recorded in one slot and the time of
// the last of them. A bucket counts against the limit until its last
// request is P old. Every request is therefore counted for at least P after
// it was made, so no interval of length P ever contains more than N allowed
// requests. The price is on the safe side only. A request can be counted
// up to one slot (P / windowBuckets, a tenth of the period) longer than an
// exact sliding log would count it, so a client can be denied up to that
// much early. The state never grows with N.
//
// The Redis store runs the same arithmetic in Lua (redis_script.lua); the
// conformance suite checks that both agree.

// windowBuckets is the number of slots per period. The error against an
// exact sliding log is at most one slot, 1/windowBuckets of the period.
const windowBuckets = 10

// maxBuckets is the number of buckets a window can hold: a live bucket is
// at most windowBuckets slots older than the newest one.
const maxBuckets = windowBuckets + 1

// window is the state of one sliding-window counter, buckets oldest first.
// Times are Unix milliseconds.
type window struct {
	n     int
	last  [maxBuckets]int64
	count [maxBuckets]int64
}

// slotWidth returns the slot width in milliseconds for a period in
// milliseconds, rounded up so that windowBuckets slots cover the period.
func slotWidth(periodMillis int64) int64 {
	w := (periodMillis + windowBuckets - 1) / windowBuckets
	if w < 1 {
		w = 1
	}
	return w
}

// clampNow returns now, or the time of the newest recorded request if the
// clock has stepped back behind it, so a clock stepping backwards never
// revives or resets a counter.
func (w *window) clampNow(now int64) int64 {
	if w.n > 0 && w.last[w.n-1] > now {
		return w.last[w.n-1]
	}
	return now
}

// prune drops the buckets whose last request is a whole period old.
func (w *window) prune(now, period int64) {
	drop := 0
	for drop < w.n && w.last[drop]+period <= now {
		drop++
	}
	if drop == 0 {
		return
	}
	copy(w.last[:], w.last[drop:w.n])
	copy(w.count[:], w.count[drop:w.n])
	w.n -= drop
}

// used returns the number of requests the window counts, after prune.
func (w *window) used() int64 {
	var total int64
	for i := 0; i < w.n; i++ {
		total += w.count[i]
	}
	return total
}

// add records one request at now, after prune.
func (w *window) add(now, period int64) {
	width := slotWidth(period)
	if w.n > 0 && w.last[w.n-1]/width == now/width {
		w.count[w.n-1]++
		w.last[w.n-1] = now
		return
	}
	if w.n == maxBuckets {
		// Only a change of the counter's period can get here. Merging the
		// two oldest buckets keeps the newer time, which is the safe side.
		w.count[1] += w.count[0]
		copy(w.last[:], w.last[1:w.n])
		copy(w.count[:], w.count[1:w.n])
		w.n--
	}
	w.last[w.n] = now
	w.count[w.n] = 1
	w.n++
}

// resetAfter returns the milliseconds until the window is empty, after prune.
func (w *window) resetAfter(now, period int64) int64 {
	if w.n == 0 {
		return 0
	}
	return w.last[w.n-1] + period - now
}

// retryAfter returns the milliseconds until the window has room for one
// more request under limit, after prune; 0 when it has room now.
func (w *window) retryAfter(now, period, limit int64) int64 {
	total := w.used()
	for i := 0; i < w.n; i++ {
		if total < limit {
			if i == 0 {
				return 0
			}
			return w.last[i-1] + period - now
		}
		total -= w.count[i]
	}
	if total < limit {
		if w.n == 0 {
			return 0
		}
		return w.last[w.n-1] + period - now
	}
	// The limit is below zero requests, which validation prevents.
	return period
}
