package throttle

import (
	"errors"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// configSecret is a marker that test files and documents use in API keys
// and secrets, so tests can check that no error message repeats one.
const configSecret = "SECRET"

// secretValue is the marker of the secrets that tests put in environment
// variables, whose names contain configSecret.
const secretValue = "s3cr3t"

func TestLoadConfigFileComplete(t *testing.T) {
	for _, name := range []string{"complete.yaml", "complete.json"} {
		t.Run(name, func(t *testing.T) {
			cfg, err := LoadConfigFile(filepath.Join("testdata", "config", name))
			require.NoError(t, err)

			// The complete files set every field to its default, except
			// the example values below.
			want := DefaultPolicy()
			want.ShadowScopes = []string{"search"}
			assert.Equal(t, &want, cfg.Policy)
			assert.Equal(t, "throttle", cfg.Prefix)
			assert.Equal(t, "UTC", cfg.Location.String())
			assert.False(t, cfg.Shadow)
			assert.False(t, cfg.ThrottleStaff)
			assert.Equal(t, []string{"example-bypass-key-0001"}, cfg.BypassAPIKeys)
			assert.Equal(t, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}, cfg.ClientIP.TrustedProxies)
			assert.Equal(t, 64, cfg.ClientIP.IPv6Prefix)
			assert.Nil(t, cfg.IPHashSecret)
			assert.False(t, cfg.FailClosed)
			assert.Equal(t, 100*time.Millisecond, cfg.StoreTimeout)
			assert.Equal(t, CircuitBreakerConfig{Failures: 5, CoolDown: 5 * time.Second}, cfg.CircuitBreaker)
			assert.Equal(t, FallbackConfig{}, cfg.Fallback)
			assert.Equal(t, 0.8, cfg.NearLimit)
			assert.Equal(t, 720*time.Hour, cfg.DenialRetention)
			assert.False(t, cfg.ProblemJSON)

			apiKeys := APIKeyThrottle{
				Name:    "api_key",
				Rates:   map[string]Rate{"example-partner-key-0002": PerHour(5000)},
				Default: PerHour(1000),
			}
			assert.Equal(t, append(want.Throttles(), apiKeys), cfg.Throttles)

			_, err = New(cfg)
			assert.NoError(t, err)
		})
	}
}

func TestLoadConfigFileFormatsAgree(t *testing.T) {
	fromYAML, err := LoadConfigFile("testdata/config/complete.yaml")
	require.NoError(t, err)
	fromJSON, err := LoadConfigFile("testdata/config/complete.json")
	require.NoError(t, err)

	assert.Equal(t, fromYAML, fromJSON)
}

// TestLoadConfigFileInvalid loads each file under testdata/config/invalid
// and checks that the error contains the text of its sibling .error file,
// which names the field path and the value.
func TestLoadConfigFileInvalid(t *testing.T) {
	files, err := filepath.Glob("testdata/config/invalid/*")
	require.NoError(t, err)

	tested := 0
	for _, file := range files {
		ext := filepath.Ext(file)
		if ext == ".error" {
			continue
		}
		tested++
		name := filepath.Base(file)
		t.Run(name, func(t *testing.T) {
			want, err := os.ReadFile(strings.TrimSuffix(file, ext) + ".error")
			require.NoError(t, err, "every invalid file needs a .error file")

			_, err = LoadConfigFile(file)

			require.Error(t, err)
			assert.Contains(t, err.Error(), strings.TrimSpace(string(want)))
			assert.Contains(t, err.Error(), file, "the error names the file")
			assert.NotContains(t, err.Error(), configSecret)
			assert.ErrorIs(t, err, ErrInvalidConfig)
			var cerr *ConfigError
			assert.ErrorAs(t, err, &cerr)
		})
	}
	assert.GreaterOrEqual(t, tested, 30)
}

func TestLoadConfigFileExtension(t *testing.T) {
	_, err := LoadConfigFile("testdata/config/complete.toml")

	require.Error(t, err)
	assert.Contains(t, err.Error(), `unsupported file extension ".toml"`)
	assert.ErrorIs(t, err, ErrInvalidConfig)
}

func TestLoadConfigFileMissing(t *testing.T) {
	_, err := LoadConfigFile("testdata/config/missing.yaml")

	assert.ErrorIs(t, err, fs.ErrNotExist)
	assert.NotErrorIs(t, err, ErrInvalidConfig)
}

func TestParseConfigFormatNames(t *testing.T) {
	for _, format := range []string{"yaml", "YAML", "yml", ".yaml", "json", "JSON"} {
		_, err := ParseConfig([]byte("{}"), format)
		assert.NoError(t, err, format)
	}

	_, err := ParseConfig([]byte("{}"), "toml")
	assert.ErrorContains(t, err, `unsupported format "toml"`)
}

func TestParseConfigEmptyKeepsDefaults(t *testing.T) {
	for _, tc := range []struct{ name, data, format string }{
		{"empty yaml", "", "yaml"},
		{"comment yaml", "# nothing set\n", "yaml"},
		{"empty object yaml", "{}", "yaml"},
		{"empty object json", "{}", "json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := ParseConfig([]byte(tc.data), tc.format)
			require.NoError(t, err)

			want := DefaultPolicy()
			assert.Equal(t, Config{Policy: &want}, cfg)
		})
	}
}

func TestParseConfigMergesPlans(t *testing.T) {
	cfg, err := ParseConfig([]byte(`
policy:
  plans:
    free:
      burst: 20/minute
      bulk: off
    team:
      sustained: 700/hour
    enterprise: null
`), "yaml")
	require.NoError(t, err)

	plans := cfg.Policy.Plans
	assert.Equal(t, PlanLimits{Sustained: PerHour(100), Burst: PerMinute(20), Daily: PerDay(500)}, plans["free"])
	assert.Equal(t, PlanLimits{Sustained: PerHour(700)}, plans["team"])
	assert.NotContains(t, plans, "enterprise")
	assert.Equal(t, DefaultPlans()["starter"], plans["starter"])
}

func TestParseConfigMergesRatesMaps(t *testing.T) {
	cfg, err := ParseConfig([]byte(`{
  "policy": {
    "roles": {"owner": "off", "member": null, "auditor": "50/hour", "admin": "10/15m"},
    "scopes": {"search": null, "report": "off", "upload": "3/minute"}
  }
}`), "json")
	require.NoError(t, err)

	roles := cfg.Policy.Roles
	assert.NotContains(t, roles, "owner")
	assert.NotContains(t, roles, "member")
	assert.Equal(t, PerHour(50), roles["auditor"])
	assert.Equal(t, Rate{Limit: 10, Period: 15 * time.Minute}, roles["admin"])
	assert.Equal(t, PerHour(2000), roles["hr"])

	scopes := cfg.Policy.Scopes
	assert.NotContains(t, scopes, "search")
	assert.NotContains(t, scopes, "report")
	assert.Equal(t, PerMinute(3), scopes["upload"])
	assert.Equal(t, PerHour(10), scopes["export"])
}

func TestParseConfigRateOff(t *testing.T) {
	for _, tc := range []struct{ name, data, format string }{
		{"yaml off", "policy: {anonymous: off, write: off}", "yaml"},
		{"yaml null", "policy:\n  anonymous:\n  write: null\n", "yaml"},
		{"json off", `{"policy": {"anonymous": "off", "write": "off"}}`, "json"},
		{"json null", `{"policy": {"anonymous": null, "write": null}}`, "json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := ParseConfig([]byte(tc.data), tc.format)
			require.NoError(t, err)

			assert.True(t, cfg.Policy.Anonymous.IsZero())
			assert.True(t, cfg.Policy.Write.IsZero())
			assert.Equal(t, PerMinute(5), cfg.Policy.AnonymousBurst, "unnamed rates keep their defaults")
			for _, th := range cfg.Policy.Throttles() {
				assert.NotEqual(t, "anon", th.Scope())
				assert.NotEqual(t, "write", th.Scope())
			}
		})
	}
}

func TestParseConfigSettings(t *testing.T) {
	cfg, err := ParseConfig([]byte(`
prefix: billing
location: Europe/Berlin
shadow: true
throttle_staff: true
trusted_proxies: ["10.1.2.3/8", 192.168.0.1]
ipv6_prefix: 56
failure_policy: closed
store_timeout: 250ms
circuit_breaker: {failures: 3, cool_down: 2s, disabled: true}
fallback: {instances: 4}
near_limit: 1
denial_retention: 48h
problem_json: true
`), "yaml")
	require.NoError(t, err)

	assert.Equal(t, "billing", cfg.Prefix)
	assert.Equal(t, "Europe/Berlin", cfg.Location.String())
	assert.True(t, cfg.Shadow)
	assert.True(t, cfg.ThrottleStaff)
	require.Len(t, cfg.ClientIP.TrustedProxies, 2)
	assert.Equal(t, "10.0.0.0/8", cfg.ClientIP.TrustedProxies[0].String())
	assert.Equal(t, "192.168.0.1/32", cfg.ClientIP.TrustedProxies[1].String())
	assert.Equal(t, 56, cfg.ClientIP.IPv6Prefix)
	assert.True(t, cfg.FailClosed)
	assert.Equal(t, 250*time.Millisecond, cfg.StoreTimeout)
	assert.Equal(t, CircuitBreakerConfig{Failures: 3, CoolDown: 2 * time.Second, Disabled: true}, cfg.CircuitBreaker)
	assert.Equal(t, FallbackConfig{Instances: 4}, cfg.Fallback)
	assert.Equal(t, 1.0, cfg.NearLimit)
	assert.Equal(t, 48*time.Hour, cfg.DenialRetention)
	assert.True(t, cfg.ProblemJSON)
	assert.Nil(t, cfg.Throttles, "without api_keys the policy's set applies")
}

func TestParseConfigSecretsFromEnvironment(t *testing.T) {
	t.Setenv("THROTTLE_TEST_BYPASS_KEY", "bypass-"+configSecret)
	t.Setenv("THROTTLE_TEST_PARTNER_KEY", "partner-"+configSecret)
	t.Setenv("THROTTLE_TEST_IP_SECRET", "0123456789abcdef-"+configSecret)

	cfg, err := ParseConfig([]byte(`
bypass_api_keys_env: [THROTTLE_TEST_BYPASS_KEY]
api_keys:
  keys_env:
    THROTTLE_TEST_PARTNER_KEY: 5/minute
ip_hash_secret_env: THROTTLE_TEST_IP_SECRET
`), "yaml")
	require.NoError(t, err)

	assert.Equal(t, []string{"bypass-" + configSecret}, cfg.BypassAPIKeys)
	assert.Equal(t, []byte("0123456789abcdef-"+configSecret), cfg.IPHashSecret)
	require.NotEmpty(t, cfg.Throttles)
	last := cfg.Throttles[len(cfg.Throttles)-1]
	assert.Equal(t, APIKeyThrottle{Name: "api_key", Rates: map[string]Rate{"partner-" + configSecret: PerMinute(5)}}, last)
}

func TestParseConfigHidesSecrets(t *testing.T) {
	t.Setenv("THROTTLE_TEST_SHORT_SECRET", "short")
	t.Setenv("THROTTLE_TEST_EMPTY", "")
	t.Setenv("THROTTLE_TEST_KEY_A", "key-"+secretValue)
	t.Setenv("THROTTLE_TEST_KEY_B", "key-"+secretValue)

	for _, tc := range []struct{ name, data, want string }{
		{"short ip secret", "ip_hash_secret_env: THROTTLE_TEST_SHORT_SECRET",
			`ip_hash_secret_env: the secret in environment variable "THROTTLE_TEST_SHORT_SECRET" is 5 bytes long`},
		{"empty variable", "bypass_api_keys_env: [THROTTLE_TEST_EMPTY]",
			`bypass_api_keys_env[0]: environment variable "THROTTLE_TEST_EMPTY" is empty`},
		{"bad variable name", "ip_hash_secret_env: NOT=VALID",
			`ip_hash_secret_env: invalid environment variable name`},
		{"same key twice", "api_keys:\n  keys_env: {THROTTLE_TEST_KEY_A: 1/hour, THROTTLE_TEST_KEY_B: 2/hour}",
			`api_keys.keys_env.THROTTLE_TEST_KEY_B: environment variable "THROTTLE_TEST_KEY_B" contains the same key as "THROTTLE_TEST_KEY_A"`},
		{"key in file and variable", "api_keys:\n  keys: {key-" + secretValue + ": 1/hour}\n  keys_env: {THROTTLE_TEST_KEY_A: 2/hour}",
			`api_keys.keys_env.THROTTLE_TEST_KEY_A: the key in environment variable "THROTTLE_TEST_KEY_A" is also listed in api_keys.keys`},
		{"bypass key of wrong type", "bypass_api_keys: [31337]",
			`bypass_api_keys[0]: invalid value: expected a string`},
		{"api key with a list as rate", "api_keys:\n  keys: {key-" + secretValue + ": [1/hour]}",
			`api_keys.keys[key at line 2]: invalid value: expected a rate`},
		{"empty bypass key", `bypass_api_keys: [""]`, `bypass_api_keys[0]: empty key`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tc.data), "yaml")

			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.NotContains(t, err.Error(), secretValue)
			assert.NotContains(t, err.Error(), "31337")
			assert.NotContains(t, err.Error(), "short")
		})
	}
}

func TestParseConfigShadowScopes(t *testing.T) {
	cfg, err := ParseConfig([]byte(`shadow_scopes: [burst, search, bulk, ip]`), "yaml")
	require.NoError(t, err)

	shadows := map[string]bool{}
	for _, th := range cfg.Policy.Throttles() {
		shadows[th.Scope()] = shadowOf(th)
	}
	assert.True(t, shadows["burst"])
	assert.False(t, shadows["plan"])
	search, ok := cfg.Policy.ScopeThrottle("search")
	require.True(t, ok)
	assert.True(t, shadowOf(search))
	assert.True(t, shadowOf(cfg.Policy.BulkThrottle()))
	assert.True(t, shadowOf(cfg.Policy.IPThrottle()))
}

// shadowOf returns the Shadow field of one of the package's throttles.
func shadowOf(th Throttle) bool {
	switch v := th.(type) {
	case PlanThrottle:
		return v.Shadow
	case DailyQuota:
		return v.Shadow
	case RoleThrottle:
		return v.Shadow
	case AnonymousThrottle:
		return v.Shadow
	case IPThrottle:
		return v.Shadow
	case WriteThrottle:
		return v.Shadow
	case SuspiciousIPThrottle:
		return v.Shadow
	case ScopeThrottle:
		return v.Shadow
	case BulkThrottle:
		return v.Shadow
	case APIKeyThrottle:
		return v.Shadow
	}
	return false
}

// TestParseConfigShadowBurstServes checks the effect of a shadow throttle
// end to end: the free plan's eleventh request in a minute is served and
// its denial by the burst throttle is reported to the Denied hook.
func TestParseConfigShadowBurstServes(t *testing.T) {
	cfg, err := ParseConfig([]byte(`shadow_scopes: [burst]`), "yaml")
	require.NoError(t, err)
	clock := NewManualClock(time.Date(2025, 12, 4, 10, 0, 0, 0, time.UTC))
	cfg.Clock = clock
	cfg.Store = NewMemoryStore(MemoryConfig{Clock: clock})
	var shadowDenials []string
	cfg.Hooks.Denied = func(e Event) {
		if e.Status.Shadow {
			shadowDenials = append(shadowDenials, e.Status.Scope)
		}
	}
	lim, err := New(cfg)
	require.NoError(t, err)
	handler := lim.Handler(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	id := Identity{Tenant: Tenant{Slug: "acme", Plan: "free"}, UserID: "u1"}

	codes := map[int]int{}
	for range 11 {
		req := httptest.NewRequest(http.MethodGet, "/items", nil)
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req.WithContext(WithIdentity(req.Context(), id)))
		codes[rec.Code]++
	}

	assert.Equal(t, map[int]int{http.StatusOK: 11}, codes)
	assert.Equal(t, []string{"burst"}, shadowDenials)
}

func TestConfigErrorWrapsCause(t *testing.T) {
	_, err := ParseConfig([]byte(`{"policy": {"ip": "5/fortnight"}}`), "json")

	assert.ErrorIs(t, err, ErrInvalidRate)
	assert.ErrorIs(t, err, ErrInvalidConfig)
	var cerr *ConfigError
	require.True(t, errors.As(err, &cerr))
	assert.Equal(t, "policy.ip", cerr.Field)
	assert.Equal(t, `throttle: invalid configuration: policy.ip: invalid rate "5/fortnight": unknown period unit "fortnight"; use second, minute, hour or day`, err.Error())
}

func TestParseConfigRejectsHostileYAML(t *testing.T) {
	// Each alias level multiplies the values by ten, up to a billion. The
	// schema has no field where lists nest, so the check stops at the
	// first one instead of expanding the aliases.
	doc := `a: &a ["x","x","x","x","x","x","x","x","x","x"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h,*h]
bypass_api_keys: [*i]
`
	_, err := ParseConfig([]byte(doc), "yaml")

	assert.ErrorIs(t, err, ErrInvalidConfig)
}

// FuzzParseConfig checks that no document makes the parser panic, and that
// New accepts every Config that ParseConfig returns.
func FuzzParseConfig(f *testing.F) {
	files, err := filepath.Glob("testdata/config/*.*")
	if err != nil {
		f.Fatal(err)
	}
	invalid, err := filepath.Glob("testdata/config/invalid/*.*")
	if err != nil {
		f.Fatal(err)
	}
	for _, file := range append(files, invalid...) {
		ext := strings.TrimPrefix(filepath.Ext(file), ".")
		if ext == "error" {
			continue
		}
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data, ext)
	}
	f.Add([]byte(`{"policy": {"plans": {"free": null, "x": {"daily": "1/d"}}}}`), "json")
	f.Add([]byte("shadow_scopes: [api_key]\napi_keys: {default: 1/s}\n"), "yaml")

	f.Fuzz(func(t *testing.T, data []byte, format string) {
		cfg, err := ParseConfig(data, format)
		if err != nil {
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("error does not wrap ErrInvalidConfig: %v", err)
			}
			return
		}
		if _, err := New(cfg); err != nil {
			t.Fatalf("New rejects a parsed configuration: %v", err)
		}
	})
}
