package throttle

import (
	"net/http"
	"strconv"
	"time"
	"unsafe"
)

// The response fields. The X-RateLimit-* fields describe the most
// restrictive throttle, as GitHub and most APIs write them. RateLimit-Policy
// and RateLimit follow draft-ietf-httpapi-ratelimit-headers-10 (September
// 2025): one list member per applicable throttle, named by its scope, with
// q (quota) and w (window, seconds) in the policy and r (remaining) and t
// (seconds until reset) in the current state.
const (
	headerLimit           = "X-Ratelimit-Limit"
	headerRemaining       = "X-Ratelimit-Remaining"
	headerReset           = "X-Ratelimit-Reset"
	headerRateLimitPolicy = "Ratelimit-Policy"
	headerRateLimit       = "Ratelimit"
	headerRetryAfter      = "Retry-After"
)

// writeHeaders writes the limit fields of d to h. It writes nothing for a
// bypassed request or when no throttle applied.
func writeHeaders(h http.Header, d *Decision) {
	if !d.hasLimits() {
		return
	}

	// One allocation holds every value and the bytes they point into.
	block := new(headerBlock)
	b := block.buf[:0]
	b = strconv.AppendInt(b, d.Limit, 10)
	limitEnd := len(b)
	b = strconv.AppendInt(b, d.Remaining, 10)
	remainingEnd := len(b)
	b = strconv.AppendInt(b, ceilUnix(d.Reset), 10)
	resetEnd := len(b)

	first := true
	for i := range d.Statuses {
		s := &d.Statuses[i]
		if s.Shadow {
			continue
		}
		if !first {
			b = append(b, ", "...)
		}
		first = false
		b = append(b, '"')
		b = append(b, s.Scope...)
		b = append(b, `";q=`...)
		b = strconv.AppendInt(b, s.Limit, 10)
		b = append(b, ";w="...)
		b = strconv.AppendInt(b, int64(s.Period/time.Second), 10)
	}
	policyEnd := len(b)

	first = true
	for i := range d.Statuses {
		s := &d.Statuses[i]
		if s.Shadow {
			continue
		}
		if !first {
			b = append(b, ", "...)
		}
		first = false
		b = append(b, '"')
		b = append(b, s.Scope...)
		b = append(b, `";r=`...)
		b = strconv.AppendInt(b, s.Remaining, 10)
		b = append(b, ";t="...)
		b = strconv.AppendInt(b, ceilSeconds(s.Reset.Sub(d.Now)), 10)
	}
	stateEnd := len(b)

	// b is still block.buf unless the values outgrew it, and then it is a
	// new array nothing else refers to. Either way it is never written again,
	// so the strings can share its memory.
	all := unsafe.String(unsafe.SliceData(b), len(b))
	values := block.values[:]
	values[0] = all[:limitEnd]
	values[1] = all[limitEnd:remainingEnd]
	values[2] = all[remainingEnd:resetEnd]
	values[3] = all[resetEnd:policyEnd]
	values[4] = all[policyEnd:stateEnd]
	h[headerLimit] = values[0:1:1]
	h[headerRemaining] = values[1:2:2]
	h[headerReset] = values[2:3:3]
	h[headerRateLimitPolicy] = values[3:4:4]
	h[headerRateLimit] = values[4:5:5]
}

// headerBlock is the memory of one response's limit fields: the five
// values and the bytes they point into. 448 bytes fit the fields of about
// eight throttles.
type headerBlock struct {
	values [5]string
	buf    [448]byte
}

// ceilUnix returns t in Unix seconds, rounded up.
func ceilUnix(t time.Time) int64 {
	s := t.Unix()
	if t.Nanosecond() > 0 {
		s++
	}
	return s
}

// ceilSeconds returns d in whole seconds, rounded up, never negative.
func ceilSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}
