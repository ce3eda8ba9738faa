package throttle

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// ConfigError is an invalid configuration document, returned by ParseConfig
// and LoadConfigFile. It wraps ErrInvalidConfig and the cause, such as
// ErrInvalidRate, so errors.Is works for both.
type ConfigError struct {
	// File is the path given to LoadConfigFile; empty for ParseConfig.
	File string
	// Field is the path of the invalid field, such as
	// "policy.plans.free.burst" or "trusted_proxies[1]"; empty when the
	// document as a whole is invalid, as for a syntax error.
	Field string
	// Err is the cause. Its text never contains an API key or a secret.
	Err error
}

// Error returns the message, such as
// `throttle: invalid configuration in app.yaml: policy.plans.free.burst: invalid rate "10/fortnight": ...`.
func (e *ConfigError) Error() string {
	var b strings.Builder
	b.WriteString(ErrInvalidConfig.Error())
	if e.File != "" {
		b.WriteString(" in ")
		b.WriteString(e.File)
	}
	b.WriteString(": ")
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	// The causes come from this package and start with its own prefix,
	// which the message already carries once.
	msg := strings.TrimPrefix(e.Err.Error(), ErrInvalidConfig.Error()+": ")
	b.WriteString(strings.TrimPrefix(msg, "throttle: "))
	return b.String()
}

// Unwrap returns ErrInvalidConfig and the cause.
func (e *ConfigError) Unwrap() []error { return []error{ErrInvalidConfig, e.Err} }

// fieldError returns the error of an invalid value at path.
func fieldError(path string, format string, args ...any) *ConfigError {
	return &ConfigError{Field: path, Err: fmt.Errorf(format, args...)}
}

// minIPHashSecretLen is the shortest secret ip_hash_secret_env may name. A
// short secret can be found by trying every candidate against a known
// address, which would make the hashed IPs reversible again.
const minIPHashSecretLen = 16

// apiKeyScope is the scope of the throttle built from the api_keys section.
const apiKeyScope = "api_key"

// builtInScopes are the scopes of the throttles that the policy builds
// itself. An endpoint scope of the same name would share their counters, so
// a configuration file cannot define one.
var builtInScopes = []string{
	"plan", "burst", "daily", "role", "anon", "anon_burst", "ip", "ip_burst",
	"suspicious_ip", "write", "bulk", apiKeyScope,
}

// LoadConfigFile reads a configuration file and returns the Config it
// describes. The format follows the extension: .json for JSON, .yaml or .yml
// for YAML; any other extension is an error. See ParseConfig for the fields
// and the rules.
func LoadConfigFile(path string) (Config, error) {
	ext := filepath.Ext(path)
	format := strings.ToLower(strings.TrimPrefix(ext, "."))
	if format != "json" && format != "yaml" && format != "yml" {
		return Config{}, &ConfigError{File: path, Err: fmt.Errorf("unsupported file extension %q: use .json, .yaml or .yml", ext)}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("throttle: read configuration: %w", err)
	}
	cfg, err := ParseConfig(data, format)
	var cerr *ConfigError
	if errors.As(err, &cerr) {
		cerr.File = path
	}
	return cfg, err
}

// ParseConfig parses a configuration document in format "json" or "yaml"
// ("yml" is accepted too) and returns the Config it describes.
//
// Every field is optional, and a missing field keeps the default that a zero
// Config field has. The document sets what can be written down: the policy,
// the bypass rules, the API-key rates, client IP resolution, shadow mode,
// the failure policy and the other settings. Store, Clock, Identify,
// DenyHandler, Logger and Hooks are code, so the caller sets them on the
// returned Config before passing it to New. The example files under
// testdata/config list every field with its default.
//
// The policy starts from DefaultPolicy. The plans, roles and scopes maps
// merge over the defaults key by key: a key the defaults have is changed, a
// new key is added, a role or scope whose value is "off" or null is
// removed, and so is a plan whose value is null. A plan given in the file
// changes only the rates it names, and a new plan starts with every rate
// off. The single rates (anonymous, ip, write and the
// others) are replaced when given, and "off" or null turns that throttle
// off.
//
// Secrets need not be written in the file: bypass_api_keys_env and
// api_keys.keys_env name environment variables that hold API keys, and
// ip_hash_secret_env names the variable that holds the IP hash secret,
// which cannot be written in the file at all. No error message contains an
// API key or a secret.
//
// The parser is strict. Each of these is an error: an unknown field, a
// duplicate key, a value of the wrong type, a null outside a rate or a plan,
// an invalid rate, a negative or zero duration, a near_limit outside (0, 1],
// an unknown time zone, an invalid CIDR prefix and an unset environment
// variable. The error is a *ConfigError that names the field path and
// quotes the value. The Config is then checked as New checks it, so New
// accepts every Config that ParseConfig returns.
func ParseConfig(data []byte, format string) (Config, error) {
	var (
		root *yaml.Node
		err  error
	)
	format = strings.ToLower(strings.TrimPrefix(format, "."))
	switch format {
	case "json":
		root, err = parseJSONTree(data)
	case "yaml", "yml":
		root, err = parseYAMLTree(data)
	default:
		return Config{}, &ConfigError{Err: fmt.Errorf("unsupported format %q: use json or yaml", format)}
	}
	if err != nil {
		return Config{}, &ConfigError{Err: err}
	}

	// The tree check gives every mistake its field path before the decoder
	// runs. The decoders are strict as well and catch what it might miss.
	checker := newTreeChecker()
	if root != nil {
		if err := checker.check(root, fileConfigType, "", "", 0); err != nil {
			return Config{}, err
		}
	}
	var file fileConfig
	if root != nil {
		if err := decodeFile(data, format, &file); err != nil {
			return Config{}, &ConfigError{Err: err}
		}
	}

	b := configBuilder{nulls: checker.nulls, lookupEnv: os.LookupEnv}
	cfg, err := b.build(&file)
	if err != nil {
		return Config{}, err
	}

	// New's own check runs on a copy with a placeholder store, so that it
	// neither builds a memory store nor changes the returned Config.
	probe := cfg
	probe.Store = placeholderStore{}
	if err := probe.normalize(); err != nil {
		return Config{}, &ConfigError{Err: err}
	}
	return cfg, nil
}

// placeholderStore is the store while ParseConfig runs New's checks, which
// only test that a store is set. Its methods are never called.
type placeholderStore struct{ Store }

// decodeFile decodes a document that the tree check accepted into file,
// rejecting unknown fields.
func decodeFile(data []byte, format string, file *fileConfig) error {
	if format == "json" {
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		return dec.Decode(file)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(file); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

// The document's schema. Every field is a pointer or a nil-able collection,
// so that a field left out can be distinguished from one set to its zero
// value. The
// json tag names each field in both formats; the tree check reads it.
type fileConfig struct {
	Prefix           *string             `json:"prefix" yaml:"prefix"`
	Location         *string             `json:"location" yaml:"location"`
	Policy           *filePolicy         `json:"policy" yaml:"policy"`
	Shadow           *bool               `json:"shadow" yaml:"shadow"`
	ShadowScopes     []string            `json:"shadow_scopes" yaml:"shadow_scopes"`
	ThrottleStaff    *bool               `json:"throttle_staff" yaml:"throttle_staff"`
	BypassAPIKeys    []string            `json:"bypass_api_keys" yaml:"bypass_api_keys" secret:"values"`
	BypassAPIKeysEnv []string            `json:"bypass_api_keys_env" yaml:"bypass_api_keys_env"`
	APIKeys          *fileAPIKeys        `json:"api_keys" yaml:"api_keys"`
	TrustedProxies   []string            `json:"trusted_proxies" yaml:"trusted_proxies"`
	IPv6Prefix       *int                `json:"ipv6_prefix" yaml:"ipv6_prefix"`
	IPHashSecretEnv  *string             `json:"ip_hash_secret_env" yaml:"ip_hash_secret_env"`
	FailurePolicy    *string             `json:"failure_policy" yaml:"failure_policy"`
	StoreTimeout     *string             `json:"store_timeout" yaml:"store_timeout"`
	CircuitBreaker   *fileCircuitBreaker `json:"circuit_breaker" yaml:"circuit_breaker"`
	Fallback         *fileFallback       `json:"fallback" yaml:"fallback"`
	NearLimit        *float64            `json:"near_limit" yaml:"near_limit"`
	DenialRetention  *string             `json:"denial_retention" yaml:"denial_retention"`
	ProblemJSON      *bool               `json:"problem_json" yaml:"problem_json"`
}

type filePolicy struct {
	Plans          map[string]*filePlan `json:"plans" yaml:"plans"`
	Roles          map[string]*rateText `json:"roles" yaml:"roles"`
	Anonymous      *rateText            `json:"anonymous" yaml:"anonymous"`
	AnonymousBurst *rateText            `json:"anonymous_burst" yaml:"anonymous_burst"`
	IP             *rateText            `json:"ip" yaml:"ip"`
	IPBurst        *rateText            `json:"ip_burst" yaml:"ip_burst"`
	SuspiciousIP   *rateText            `json:"suspicious_ip" yaml:"suspicious_ip"`
	Write          *rateText            `json:"write" yaml:"write"`
	Scopes         map[string]*rateText `json:"scopes" yaml:"scopes"`
}

type filePlan struct {
	Sustained *rateText `json:"sustained" yaml:"sustained"`
	Burst     *rateText `json:"burst" yaml:"burst"`
	Daily     *rateText `json:"daily" yaml:"daily"`
	Bulk      *rateText `json:"bulk" yaml:"bulk"`
}

type fileAPIKeys struct {
	Default *rateText            `json:"default" yaml:"default"`
	Keys    map[string]*rateText `json:"keys" yaml:"keys" secret:"keys"`
	KeysEnv map[string]*rateText `json:"keys_env" yaml:"keys_env"`
}

type fileCircuitBreaker struct {
	Failures *int    `json:"failures" yaml:"failures"`
	CoolDown *string `json:"cool_down" yaml:"cool_down"`
	Disabled *bool   `json:"disabled" yaml:"disabled"`
}

type fileFallback struct {
	Instances *int `json:"instances" yaml:"instances"`
}

// rateText is a rate as written, "100/hour" or "off". A null rate decodes
// to a nil *rateText; the tree check records where, because a nil field
// is otherwise the same as a missing one.
type rateText string

// rateOff is the value that turns a rate off.
const rateOff = "off"

// configBuilder turns a decoded document into a Config.
type configBuilder struct {
	// nulls holds the paths of the rates given as null.
	nulls map[string]bool
	// lookupEnv reads environment variables; os.LookupEnv outside tests.
	lookupEnv func(string) (string, bool)
}

// rate returns the rate at path and whether the document sets it. A zero
// Rate with set true means "off".
func (b *configBuilder) rate(path string, text *rateText) (r Rate, set bool, err error) {
	if text == nil {
		return Rate{}, b.nulls[path], nil
	}
	if *text == rateOff {
		return Rate{}, true, nil
	}
	r, err = ParseRate(string(*text))
	if err != nil {
		return Rate{}, false, &ConfigError{Field: path, Err: err}
	}
	return r, true, nil
}

// setRate overwrites *dst with the rate at path when the document sets it.
func (b *configBuilder) setRate(dst *Rate, path string, text *rateText) error {
	r, set, err := b.rate(path, text)
	if err != nil {
		return err
	}
	if set {
		*dst = r
	}
	return nil
}

// mergeRates merges the rates of a document's map over dst: "off" and null
// delete the entry. With keyNames set, the names must be valid in counter
// keys, as scope names must; role names need not.
func (b *configBuilder) mergeRates(dst map[string]Rate, path string, src map[string]*rateText, keyNames bool) error {
	for _, name := range sortedKeys(src) {
		entryPath := joinPath(path, name)
		if keyNames {
			if err := validateName(entryPath, name); err != nil {
				return &ConfigError{Err: err}
			}
		}
		r, _, err := b.rate(entryPath, src[name])
		if err != nil {
			return err
		}
		if r.IsZero() {
			delete(dst, name)
			continue
		}
		dst[name] = r
	}
	return nil
}

// build returns the Config of file.
func (b *configBuilder) build(file *fileConfig) (Config, error) {
	var cfg Config

	policy, err := b.buildPolicy(file.Policy)
	if err != nil {
		return Config{}, err
	}
	apiKeys, err := b.buildAPIKeys(file.APIKeys)
	if err != nil {
		return Config{}, err
	}
	if err := checkShadowScopes(file.ShadowScopes, &policy, apiKeys != nil); err != nil {
		return Config{}, err
	}
	policy.ShadowScopes = file.ShadowScopes
	if err := policy.Validate(); err != nil {
		return Config{}, &ConfigError{Field: "policy", Err: err}
	}
	cfg.Policy = &policy
	if apiKeys != nil {
		apiKeys.Shadow = policy.isShadow(apiKeyScope)
		cfg.Throttles = append(policy.Throttles(), *apiKeys)
	}

	if file.Prefix != nil {
		if err := validateName("prefix", *file.Prefix); err != nil {
			return Config{}, &ConfigError{Err: err}
		}
		cfg.Prefix = *file.Prefix
	}
	if file.Location != nil {
		loc, err := loadLocation(*file.Location)
		if err != nil {
			return Config{}, err
		}
		cfg.Location = loc
	}
	cfg.Shadow = file.Shadow != nil && *file.Shadow
	cfg.ThrottleStaff = file.ThrottleStaff != nil && *file.ThrottleStaff
	cfg.ProblemJSON = file.ProblemJSON != nil && *file.ProblemJSON

	if cfg.BypassAPIKeys, err = b.bypassKeys(file); err != nil {
		return Config{}, err
	}
	if err := b.buildClientIP(file, &cfg); err != nil {
		return Config{}, err
	}
	if err := b.buildStoreSettings(file, &cfg); err != nil {
		return Config{}, err
	}

	if file.NearLimit != nil {
		v := *file.NearLimit
		if !(v > 0 && v <= 1) {
			return Config{}, fieldError("near_limit", "invalid value %v: must be greater than 0 and at most 1", v)
		}
		cfg.NearLimit = v
	}
	if file.DenialRetention != nil {
		if cfg.DenialRetention, err = positiveDuration("denial_retention", *file.DenialRetention); err != nil {
			return Config{}, err
		}
	}
	return cfg, nil
}

// buildPolicy merges the document's policy over DefaultPolicy.
func (b *configBuilder) buildPolicy(file *filePolicy) (Policy, error) {
	p := DefaultPolicy()
	if file == nil {
		return p, nil
	}

	for _, name := range sortedKeys(file.Plans) {
		path := joinPath("policy.plans", name)
		if err := validateName(path, name); err != nil {
			return Policy{}, &ConfigError{Err: err}
		}
		plan := file.Plans[name]
		if plan == nil {
			delete(p.Plans, name)
			continue
		}
		limits := p.Plans[name]
		for _, f := range []struct {
			name string
			dst  *Rate
			text *rateText
		}{
			{"sustained", &limits.Sustained, plan.Sustained},
			{"burst", &limits.Burst, plan.Burst},
			{"daily", &limits.Daily, plan.Daily},
			{"bulk", &limits.Bulk, plan.Bulk},
		} {
			if err := b.setRate(f.dst, path+"."+f.name, f.text); err != nil {
				return Policy{}, err
			}
		}
		if !limits.Daily.IsZero() && limits.Daily.Period != 24*time.Hour {
			return Policy{}, fieldError(path+".daily", "invalid rate %q: a daily quota resets at midnight, so it must be N/day", limits.Daily.String())
		}
		p.Plans[name] = limits
	}

	if err := b.mergeRates(p.Roles, "policy.roles", file.Roles, false); err != nil {
		return Policy{}, err
	}

	for _, f := range []struct {
		name string
		dst  *Rate
		text *rateText
	}{
		{"anonymous", &p.Anonymous, file.Anonymous},
		{"anonymous_burst", &p.AnonymousBurst, file.AnonymousBurst},
		{"ip", &p.IP, file.IP},
		{"ip_burst", &p.IPBurst, file.IPBurst},
		{"suspicious_ip", &p.SuspiciousIP, file.SuspiciousIP},
		{"write", &p.Write, file.Write},
	} {
		if err := b.setRate(f.dst, "policy."+f.name, f.text); err != nil {
			return Policy{}, err
		}
	}

	for _, name := range sortedKeys(file.Scopes) {
		path := joinPath("policy.scopes", name)
		if slices.Contains(builtInScopes, name) || reservedScopes[name] {
			return Policy{}, fieldError(path, "invalid name %q: it is the scope of a built-in throttle or of the library's own keys", name)
		}
	}
	if err := b.mergeRates(p.Scopes, "policy.scopes", file.Scopes, true); err != nil {
		return Policy{}, err
	}
	return p, nil
}

// buildAPIKeys returns the API-key throttle of the document, or nil when it
// has none. API keys never appear in its errors: a key is named by the
// environment variable that holds it, or not at all.
func (b *configBuilder) buildAPIKeys(file *fileAPIKeys) (*APIKeyThrottle, error) {
	if file == nil {
		return nil, nil
	}
	t := &APIKeyThrottle{Name: apiKeyScope, Rates: make(map[string]Rate)}
	if err := b.setRate(&t.Default, "api_keys.default", file.Default); err != nil {
		return nil, err
	}

	// Keys written in the file are secrets, so errors name no key; the rate
	// that is quoted is enough to find the entry.
	for key, text := range file.Keys {
		if key == "" {
			return nil, fieldError("api_keys.keys", "empty key")
		}
		r, _, err := b.rate("api_keys.keys", text)
		if err != nil {
			return nil, err
		}
		t.Rates[key] = r
	}

	// A key given twice could carry two rates, and which one won would
	// depend on map order, so it is an error.
	from := make(map[string]string, len(file.KeysEnv))
	for _, name := range sortedKeys(file.KeysEnv) {
		path := joinPath("api_keys.keys_env", name)
		key, err := b.env(path, name)
		if err != nil {
			return nil, err
		}
		if _, ok := file.Keys[key]; ok {
			return nil, fieldError(path, "the key in environment variable %q is also listed in api_keys.keys", name)
		}
		if other, ok := from[key]; ok {
			return nil, fieldError(path, "environment variable %q contains the same key as %q", name, other)
		}
		from[key] = name
		r, _, err := b.rate(path, file.KeysEnv[name])
		if err != nil {
			return nil, err
		}
		t.Rates[key] = r
	}

	if t.Default.IsZero() && len(t.Rates) == 0 {
		return nil, nil
	}
	return t, nil
}

// checkShadowScopes reports a shadow scope that names no throttle of the
// configuration, which is most likely a typing mistake.
func checkShadowScopes(scopes []string, p *Policy, hasAPIKeys bool) error {
	known := make(map[string]bool)
	for _, t := range p.Throttles() {
		known[t.Scope()] = true
	}
	known["ip"] = !p.IP.IsZero()
	known["bulk"] = len(p.Plans) > 0
	known[apiKeyScope] = hasAPIKeys
	for name, r := range p.Scopes {
		known[name] = !r.IsZero()
	}
	for i, scope := range scopes {
		if !known[scope] {
			var names []string
			for name, ok := range known {
				if ok {
					names = append(names, name)
				}
			}
			slices.Sort(names)
			return fieldError(fmt.Sprintf("shadow_scopes[%d]", i), "unknown scope %q: the configuration has the scopes %s", scope, strings.Join(names, ", "))
		}
	}
	return nil
}

// bypassKeys returns the allowlisted API keys, from the file and from the
// environment variables it names.
func (b *configBuilder) bypassKeys(file *fileConfig) ([]string, error) {
	var keys []string
	for i, key := range file.BypassAPIKeys {
		if key == "" {
			return nil, fieldError(fmt.Sprintf("bypass_api_keys[%d]", i), "empty key")
		}
		keys = append(keys, key)
	}
	for i, name := range file.BypassAPIKeysEnv {
		key, err := b.env(fmt.Sprintf("bypass_api_keys_env[%d]", i), name)
		if err != nil {
			return nil, err
		}
		keys = append(keys, key)
	}
	return keys, nil
}

// buildClientIP sets the client IP resolution and the IP hash secret.
func (b *configBuilder) buildClientIP(file *fileConfig, cfg *Config) error {
	for i, entry := range file.TrustedProxies {
		prefix, err := parseTrustedProxy(strings.TrimSpace(entry))
		if err != nil {
			return fieldError(fmt.Sprintf("trusted_proxies[%d]", i), "invalid value %q: %w", entry, err)
		}
		cfg.ClientIP.TrustedProxies = append(cfg.ClientIP.TrustedProxies, prefix)
	}
	if file.IPv6Prefix != nil {
		bits := *file.IPv6Prefix
		if bits < 1 || bits > 128 {
			return fieldError("ipv6_prefix", "invalid value %d: must be between 1 and 128", bits)
		}
		cfg.ClientIP.IPv6Prefix = bits
	}
	if file.IPHashSecretEnv != nil {
		name := *file.IPHashSecretEnv
		secret, err := b.env("ip_hash_secret_env", name)
		if err != nil {
			return err
		}
		if len(secret) < minIPHashSecretLen {
			return fieldError("ip_hash_secret_env", "the secret in environment variable %q is %d bytes long: use at least %d random bytes", name, len(secret), minIPHashSecretLen)
		}
		cfg.IPHashSecret = []byte(secret)
	}
	return nil
}

// buildStoreSettings sets the failure policy, the store timeout, the
// circuit breaker and the local fallback.
func (b *configBuilder) buildStoreSettings(file *fileConfig, cfg *Config) error {
	var err error
	if file.FailurePolicy != nil {
		switch *file.FailurePolicy {
		case "open":
		case "closed":
			cfg.FailClosed = true
		default:
			return fieldError("failure_policy", "invalid value %q: use open or closed", *file.FailurePolicy)
		}
	}
	if file.StoreTimeout != nil {
		if cfg.StoreTimeout, err = positiveDuration("store_timeout", *file.StoreTimeout); err != nil {
			return err
		}
	}
	if cb := file.CircuitBreaker; cb != nil {
		if cb.Failures != nil {
			if *cb.Failures < 1 {
				return fieldError("circuit_breaker.failures", "invalid value %d: must be positive", *cb.Failures)
			}
			cfg.CircuitBreaker.Failures = *cb.Failures
		}
		if cb.CoolDown != nil {
			if cfg.CircuitBreaker.CoolDown, err = positiveDuration("circuit_breaker.cool_down", *cb.CoolDown); err != nil {
				return err
			}
		}
		cfg.CircuitBreaker.Disabled = cb.Disabled != nil && *cb.Disabled
	}
	if fb := file.Fallback; fb != nil && fb.Instances != nil {
		if *fb.Instances < 0 {
			return fieldError("fallback.instances", "invalid value %d: must be 0 (off) or positive", *fb.Instances)
		}
		cfg.Fallback.Instances = *fb.Instances
	}
	return nil
}

// env returns the value of the environment variable name, which the field
// at path gives. The value is a secret and appears in no error.
func (b *configBuilder) env(path, name string) (string, error) {
	if !validEnvName(name) {
		return "", fieldError(path, "invalid environment variable name %q: use letters, digits and '_', not starting with a digit", name)
	}
	value, ok := b.lookupEnv(name)
	if !ok {
		return "", fieldError(path, "environment variable %q is not set", name)
	}
	if value == "" {
		return "", fieldError(path, "environment variable %q is empty", name)
	}
	return value, nil
}

// validEnvName reports whether name is a portable environment variable name.
func validEnvName(name string) bool {
	if name == "" || name[0] >= '0' && name[0] <= '9' {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// loadLocation loads an IANA time zone. "Local" is rejected because it
// depends on the machine, and instances whose days started at different
// times would disagree on daily quotas.
func loadLocation(name string) (*time.Location, error) {
	if name == "" || name == "Local" {
		return nil, fieldError("location", "invalid value %q: use an IANA time zone name such as UTC or Europe/Berlin", name)
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, fieldError("location", "unknown time zone %q: use an IANA time zone name such as UTC or Europe/Berlin", name)
	}
	return loc, nil
}

// positiveDuration parses a Go duration such as "100ms" or "720h" that must
// be positive.
func positiveDuration(path, text string) (time.Duration, error) {
	d, err := time.ParseDuration(text)
	if err != nil {
		return 0, fieldError(path, "invalid duration %q: use a Go duration such as 100ms, 5s or 720h", text)
	}
	if d <= 0 {
		return 0, fieldError(path, "invalid duration %q: must be positive", text)
	}
	return d, nil
}

// joinPath appends a map key to a field path. A key that is not a plain
// name is quoted, so that a key with a dot cannot pass for two levels.
func joinPath(path, key string) string {
	if isPlainKey(key) {
		return path + "." + key
	}
	return fmt.Sprintf("%s[%q]", path, key)
}

// isPlainKey reports whether key can be written in a path unquoted.
func isPlainKey(key string) bool {
	if key == "" {
		return false
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
