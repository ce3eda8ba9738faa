package throttle

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseRateValid(t *testing.T) {
	const day = 24 * time.Hour
	cases := []struct {
		name string
		in   string
		want Rate
	}{
		{name: "s", in: "5/s", want: Rate{Limit: 5, Period: time.Second}},
		{name: "sec", in: "5/sec", want: Rate{Limit: 5, Period: time.Second}},
		{name: "secs", in: "5/secs", want: Rate{Limit: 5, Period: time.Second}},
		{name: "second", in: "5/second", want: Rate{Limit: 5, Period: time.Second}},
		{name: "seconds", in: "5/seconds", want: Rate{Limit: 5, Period: time.Second}},
		{name: "m", in: "10/m", want: Rate{Limit: 10, Period: time.Minute}},
		{name: "min", in: "10/min", want: Rate{Limit: 10, Period: time.Minute}},
		{name: "mins", in: "10/mins", want: Rate{Limit: 10, Period: time.Minute}},
		{name: "minute", in: "10/minute", want: Rate{Limit: 10, Period: time.Minute}},
		{name: "minutes", in: "10/minutes", want: Rate{Limit: 10, Period: time.Minute}},
		{name: "h", in: "100/h", want: Rate{Limit: 100, Period: time.Hour}},
		{name: "hr", in: "100/hr", want: Rate{Limit: 100, Period: time.Hour}},
		{name: "hrs", in: "100/hrs", want: Rate{Limit: 100, Period: time.Hour}},
		{name: "hour", in: "100/hour", want: Rate{Limit: 100, Period: time.Hour}},
		{name: "hours", in: "100/hours", want: Rate{Limit: 100, Period: time.Hour}},
		{name: "d", in: "500/d", want: Rate{Limit: 500, Period: day}},
		{name: "day", in: "500/day", want: Rate{Limit: 500, Period: day}},
		{name: "days", in: "500/days", want: Rate{Limit: 500, Period: day}},
		{name: "upper case unit", in: "7/HOUR", want: Rate{Limit: 7, Period: time.Hour}},
		{name: "mixed case unit", in: "7/Min", want: Rate{Limit: 7, Period: time.Minute}},
		{name: "multiple of minutes", in: "100/15m", want: Rate{Limit: 100, Period: 15 * time.Minute}},
		{name: "multiple of seconds", in: "3/30s", want: Rate{Limit: 3, Period: 30 * time.Second}},
		{name: "multiple of days", in: "1000/7d", want: Rate{Limit: 1000, Period: 7 * day}},
		{name: "multiple of one", in: "10/1h", want: Rate{Limit: 10, Period: time.Hour}},
		{name: "multiple with long unit", in: "5/2hours", want: Rate{Limit: 5, Period: 2 * time.Hour}},
		// Spaces around the parts and between the multiple and its unit are
		// allowed, so "5 / 2 hours" is five requests per two hours.
		{name: "spaces everywhere", in: " 5 / 2 hours ", want: Rate{Limit: 5, Period: 2 * time.Hour}},
		{name: "tab before unit", in: "5/\thour", want: Rate{Limit: 5, Period: time.Hour}},
		{name: "leading zeros", in: "007/h", want: Rate{Limit: 7, Period: time.Hour}},
		{name: "leading zeros in multiple", in: "7/015m", want: Rate{Limit: 7, Period: 15 * time.Minute}},
		{name: "largest limit", in: "1099511627776/s", want: Rate{Limit: 1 << 40, Period: time.Second}},
		{name: "longest period in days", in: "1/366d", want: Rate{Limit: 1, Period: 366 * day}},
		{name: "longest period in seconds", in: "1/31622400s", want: Rate{Limit: 1, Period: 366 * day}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseRate(tc.in)
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestParseRateInvalid(t *testing.T) {
	cases := []struct {
		name string
		in   string
	}{
		{name: "empty", in: ""},
		{name: "blank", in: "   "},
		{name: "zero limit", in: "0/hour"},
		{name: "negative limit", in: "-1/h"},
		{name: "fractional limit", in: "1.5/h"},
		{name: "plus sign", in: "+5/h"},
		{name: "hexadecimal limit", in: "0x10/h"},
		{name: "exponent limit", in: "1e3/h"},
		{name: "unknown unit", in: "10/fortnight"},
		{name: "week is not a unit", in: "10/week"},
		{name: "millisecond is not a unit", in: "10/ms"},
		{name: "zero multiple", in: "10/0m"},
		{name: "negative multiple", in: "10/-5m"},
		{name: "fractional multiple", in: "10/1.5h"},
		{name: "multiple without unit", in: "10/15"},
		{name: "no period", in: "10"},
		{name: "empty period", in: "10/"},
		{name: "empty limit", in: "/hour"},
		{name: "two slashes", in: "1/2/h"},
		{name: "duration syntax", in: "10/1h30m"},
		{name: "limit overflows int64", in: "99999999999999999999/h"},
		{name: "limit above maximum", in: "1099511627777/s"},
		{name: "multiple overflows int64", in: "1/99999999999999999999s"},
		{name: "multiple overflows duration", in: "1/9223372036854775807d"},
		{name: "period above 366 days", in: "1/367d"},
		{name: "period above 366 days in hours", in: "1/8785h"},
		{name: "space inside limit", in: "1 0/h"},
		{name: "unit before multiple", in: "10/m15"},
		{name: "unicode digits", in: "٣/h"},
		{name: "non-breaking space inside unit", in: "10/ho\u00a0ur"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseRate(tc.in)
			require.ErrorIs(t, err, ErrInvalidRate)
			assert.Equal(t, Rate{}, got)
		})
	}
}

func TestParseRateErrorQuotesInput(t *testing.T) {
	_, err := ParseRate("10/fortnight")
	require.Error(t, err)
	assert.Contains(t, err.Error(), `"10/fortnight"`)
}

func TestMustParseRatePanics(t *testing.T) {
	assert.Equal(t, PerMinute(3), MustParseRate("3/minute"))
	assert.Panics(t, func() { MustParseRate("3/fortnight") })
}

func TestRateString(t *testing.T) {
	cases := []struct {
		name string
		in   Rate
		want string
	}{
		{name: "per second", in: PerSecond(5), want: "5/second"},
		{name: "per minute", in: PerMinute(10), want: "10/minute"},
		{name: "per hour", in: PerHour(100), want: "100/hour"},
		{name: "per day", in: PerDay(500), want: "500/day"},
		{name: "fifteen minutes", in: Rate{Limit: 100, Period: 15 * time.Minute}, want: "100/15m"},
		{name: "ninety seconds", in: Rate{Limit: 2, Period: 90 * time.Second}, want: "2/90s"},
		{name: "two days", in: Rate{Limit: 7, Period: 48 * time.Hour}, want: "7/2d"},
		{name: "thirty hours", in: Rate{Limit: 7, Period: 30 * time.Hour}, want: "7/30h"},
		{name: "zero", in: Rate{}, want: ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, tc.in.String())
		})
	}
}

func TestRateStringRoundTrip(t *testing.T) {
	inputs := []string{
		"1/s", "5/sec", "10/m", "10/minutes", "100/h", "100/hour", "500/d", "100/15m",
		"3/30s", "1000/7d", "5/2hours", "1/366d", "1/31622399s", "1099511627776/s", "7/25h",
	}
	for _, in := range inputs {
		t.Run(in, func(t *testing.T) {
			parsed, err := ParseRate(in)
			require.NoError(t, err)

			again, err := ParseRate(parsed.String())
			require.NoError(t, err, "String() = %q", parsed.String())
			assert.Equal(t, parsed, again)
		})
	}
}

func TestRateValidate(t *testing.T) {
	cases := []struct {
		name  string
		in    Rate
		valid bool
	}{
		{name: "per hour", in: PerHour(1), valid: true},
		{name: "zero", in: Rate{}},
		{name: "zero limit", in: Rate{Period: time.Hour}},
		{name: "negative limit", in: Rate{Limit: -1, Period: time.Hour}},
		{name: "zero period", in: Rate{Limit: 1}},
		{name: "sub-second period", in: Rate{Limit: 1, Period: 500 * time.Millisecond}},
		{name: "fractional seconds", in: Rate{Limit: 1, Period: 1500 * time.Millisecond}},
		{name: "period above 366 days", in: Rate{Limit: 1, Period: 367 * 24 * time.Hour}},
		{name: "limit above maximum", in: Rate{Limit: 1<<40 + 1, Period: time.Hour}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.in.Validate()
			if tc.valid {
				assert.NoError(t, err)
				return
			}
			assert.Error(t, err)
		})
	}
}

// rateDocument is a configuration fragment that contains rates the way
// Policy and PlanLimits do.
type rateDocument struct {
	Burst  Rate            `json:"burst"`
	Scopes map[string]Rate `json:"scopes"`
}

func TestRateJSON(t *testing.T) {
	doc := rateDocument{
		Burst:  PerMinute(10),
		Scopes: map[string]Rate{"search": {Limit: 100, Period: 15 * time.Minute}},
	}

	data, err := json.Marshal(doc)
	require.NoError(t, err)
	assert.JSONEq(t, `{"burst": "10/minute", "scopes": {"search": "100/15m"}}`, string(data))

	var decoded rateDocument
	require.NoError(t, json.Unmarshal(data, &decoded))
	assert.Equal(t, doc, decoded)
}

func TestRateJSONAcceptsAbbreviations(t *testing.T) {
	var decoded rateDocument
	require.NoError(t, json.Unmarshal([]byte(`{"burst": "30 / 2 mins"}`), &decoded))
	assert.Equal(t, Rate{Limit: 30, Period: 2 * time.Minute}, decoded.Burst)
}

func TestRateJSONRejectsInvalid(t *testing.T) {
	cases := []struct {
		name string
		doc  string
	}{
		{name: "zero limit", doc: `{"burst": "0/hour"}`},
		{name: "unknown unit", doc: `{"burst": "10/fortnight"}`},
		{name: "no period", doc: `{"burst": "10"}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var decoded rateDocument
			err := json.Unmarshal([]byte(tc.doc), &decoded)
			assert.ErrorIs(t, err, ErrInvalidRate)
		})
	}
}

func TestRateJSONRejectsNumber(t *testing.T) {
	var decoded rateDocument
	err := json.Unmarshal([]byte(`{"burst": 10}`), &decoded)
	var typeErr *json.UnmarshalTypeError
	assert.ErrorAs(t, err, &typeErr)
}

// TestRateJSONZeroRoundTrip checks that the zero Rate, which Policy reads as
// "this throttle is off", decodes from what MarshalText writes for it.
// Otherwise a policy that turns a throttle off cannot be saved as JSON and
// loaded again.
func TestRateJSONZeroRoundTrip(t *testing.T) {
	doc := rateDocument{Burst: Rate{}, Scopes: map[string]Rate{"search": {}}}

	data, err := json.Marshal(doc)
	require.NoError(t, err)

	var decoded rateDocument
	require.NoError(t, json.Unmarshal(data, &decoded), "document %s", data)
	assert.Equal(t, doc, decoded)
}

func FuzzParseRate(f *testing.F) {
	for _, seed := range []string{
		"100/hour", "100/15m", " 5 / 2 hours ", "1/366d", "1/367d", "0/h", "+5/h", "1.5/h",
		"10/fortnight", "10/0m", "10", "10/", "", "99999999999999999999/h", "1099511627776/s",
		"1/9223372036854775807d", "7/HOUR", "5/\tsec", "٣/h",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in string) {
		r, err := ParseRate(in)
		if err != nil {
			require.ErrorIs(t, err, ErrInvalidRate)
			require.Equal(t, Rate{}, r)
			return
		}
		require.NoError(t, r.Validate())

		text := r.String()
		require.False(t, strings.ContainsAny(text, " \t"), "String() = %q", text)
		again, err := ParseRate(text)
		require.NoError(t, err, "String() = %q", text)
		require.Equal(t, r, again)
	})
}
