package throttle

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ErrInvalidRate is returned, wrapped, by ParseRate and by configuration
// checks when a rate is malformed, zero or negative.
var ErrInvalidRate = errors.New("throttle: invalid rate")

// maxRateLimit bounds the request count of a rate so that counters and
// header values never overflow.
const maxRateLimit = 1 << 40

// maxRatePeriod bounds the period of a rate. A year is longer than any
// quota the library is meant for, and keeps every TTL within int64 milliseconds.
const maxRatePeriod = 366 * 24 * time.Hour

// Rate is a number of requests allowed per period, such as 100 per hour.
// The zero Rate is not valid; use ParseRate or PerHour and its siblings.
type Rate struct {
	// Limit is the number of requests allowed in any interval of length Period.
	Limit int64
	// Period is the length of the window, a whole number of seconds.
	Period time.Duration
}

// PerSecond returns a rate of n requests per second.
func PerSecond(n int64) Rate { return Rate{Limit: n, Period: time.Second} }

// PerMinute returns a rate of n requests per minute.
func PerMinute(n int64) Rate { return Rate{Limit: n, Period: time.Minute} }

// PerHour returns a rate of n requests per hour.
func PerHour(n int64) Rate { return Rate{Limit: n, Period: time.Hour} }

// PerDay returns a rate of n requests per day.
func PerDay(n int64) Rate { return Rate{Limit: n, Period: 24 * time.Hour} }

// MustParseRate is like ParseRate but panics on an invalid rate. It is meant
// for rates written as constants in code.
func MustParseRate(s string) Rate {
	r, err := ParseRate(s)
	if err != nil {
		panic(err)
	}
	return r
}

// ParseRate parses a rate written as "N/unit" or "N/Munit", where N is a
// positive integer and unit is one of second (s, sec, secs, seconds), minute
// (m, min, mins, minutes), hour (h, hr, hrs, hours) or day (d, days). The
// optional multiple M, as in "100/15m", lengthens the period. Spaces around
// the parts are allowed. Anything else is an error wrapping ErrInvalidRate,
// never a guess.
func ParseRate(s string) (Rate, error) {
	countText, periodText, found := strings.Cut(s, "/")
	if !found {
		return Rate{}, fmt.Errorf("%w %q: expected N/period, such as \"100/hour\"", ErrInvalidRate, s)
	}
	countText = strings.TrimSpace(countText)
	periodText = strings.TrimSpace(periodText)

	limit, err := parsePositiveInt(countText)
	if err != nil {
		return Rate{}, fmt.Errorf("%w %q: request count %q is not a positive integer", ErrInvalidRate, s, countText)
	}

	digits := 0
	for digits < len(periodText) && periodText[digits] >= '0' && periodText[digits] <= '9' {
		digits++
	}
	multiple := int64(1)
	if digits > 0 {
		multiple, err = parsePositiveInt(periodText[:digits])
		if err != nil {
			return Rate{}, fmt.Errorf("%w %q: period multiple %q is not a positive integer", ErrInvalidRate, s, periodText[:digits])
		}
	}
	unitText := strings.TrimSpace(periodText[digits:])
	unit, ok := rateUnits[strings.ToLower(unitText)]
	if !ok {
		return Rate{}, fmt.Errorf("%w %q: unknown period unit %q; use second, minute, hour or day", ErrInvalidRate, s, unitText)
	}
	if multiple > int64(maxRatePeriod/unit) {
		return Rate{}, fmt.Errorf("%w %q: period is longer than %v", ErrInvalidRate, s, maxRatePeriod)
	}

	r := Rate{Limit: limit, Period: time.Duration(multiple) * unit}
	if err := r.Validate(); err != nil {
		return Rate{}, fmt.Errorf("%w %q: %v", ErrInvalidRate, s, err)
	}
	return r, nil
}

var rateUnits = map[string]time.Duration{
	"s": time.Second, "sec": time.Second, "secs": time.Second, "second": time.Second, "seconds": time.Second,
	"m": time.Minute, "min": time.Minute, "mins": time.Minute, "minute": time.Minute, "minutes": time.Minute,
	"h": time.Hour, "hr": time.Hour, "hrs": time.Hour, "hour": time.Hour, "hours": time.Hour,
	"d": 24 * time.Hour, "day": 24 * time.Hour, "days": 24 * time.Hour,
}

// parsePositiveInt accepts only ASCII digits, so "+5", "0x10" and "1e3" are rejected.
func parsePositiveInt(s string) (int64, error) {
	if s == "" {
		return 0, errors.New("empty")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, errors.New("not a decimal integer")
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, err
	}
	if n <= 0 {
		return 0, errors.New("not positive")
	}
	return n, nil
}

// Validate reports why r cannot be enforced, or nil when it can.
func (r Rate) Validate() error {
	switch {
	case r.Limit <= 0:
		return fmt.Errorf("limit %d must be positive", r.Limit)
	case r.Limit > maxRateLimit:
		return fmt.Errorf("limit %d is larger than %d", r.Limit, int64(maxRateLimit))
	case r.Period < time.Second:
		return fmt.Errorf("period %v is shorter than one second", r.Period)
	case r.Period > maxRatePeriod:
		return fmt.Errorf("period %v is longer than %v", r.Period, maxRatePeriod)
	case r.Period%time.Second != 0:
		return fmt.Errorf("period %v is not a whole number of seconds", r.Period)
	}
	return nil
}

// IsZero reports whether r is the zero Rate, which configuration uses for
// "not set".
func (r Rate) IsZero() bool { return r.Limit == 0 && r.Period == 0 }

// String formats r the way ParseRate reads it, such as "100/hour" or "100/15m".
func (r Rate) String() string {
	if r.IsZero() {
		return ""
	}
	period := r.Period
	for _, u := range [...]struct {
		name string
		size time.Duration
	}{{"day", 24 * time.Hour}, {"hour", time.Hour}, {"minute", time.Minute}, {"second", time.Second}} {
		if period%u.size != 0 {
			continue
		}
		n := int64(period / u.size)
		if n == 1 {
			return strconv.FormatInt(r.Limit, 10) + "/" + u.name
		}
		return strconv.FormatInt(r.Limit, 10) + "/" + strconv.FormatInt(n, 10) + u.name[:1]
	}
	return strconv.FormatInt(r.Limit, 10) + "/" + period.String()
}

// MarshalText writes r as ParseRate reads it, so rates appear as "100/hour"
// in JSON and YAML.
func (r Rate) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText parses text with ParseRate. Empty text is the zero Rate,
// which configuration reads as "not set", so a zero Rate round-trips.
func (r *Rate) UnmarshalText(text []byte) error {
	if len(text) == 0 {
		*r = Rate{}
		return nil
	}
	parsed, err := ParseRate(string(text))
	if err != nil {
		return err
	}
	*r = parsed
	return nil
}
