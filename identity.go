package throttle

import (
	"context"
	"net/http"
	"net/netip"
)

// Identity is who calls, as the host service established it. The library
// authenticates nothing: it reads the Identity that the service stored in
// the request context with WithIdentity, or that Config.Identify returns.
// Nothing the client sends (a header, a cookie, a query parameter) is read
// into an Identity by the library, so nothing the client sends can grant a
// bypass.
type Identity struct {
	// Tenant is the caller's organisation. The zero Tenant means the
	// request has none; its counters then belong to the tenant "public".
	Tenant Tenant
	// UserID identifies the user inside the tenant; empty means anonymous.
	UserID string
	// Role is the user's role inside the tenant, such as "owner" or "member".
	Role string
	// Staff and Superuser callers bypass every throttle unless
	// Config.ThrottleStaff is set.
	Staff     bool
	Superuser bool
	// APIKey is the key the caller authenticated with, if any. It is matched
	// against the API-key allowlist and rates, and only ever stored hashed.
	APIKey string
}

// Tenant is a customer organisation.
type Tenant struct {
	// Slug names the tenant in counter keys.
	Slug string
	// ID is the tenant's identifier in the host service, passed to hooks.
	ID string
	// Plan is the tenant's plan name; empty or unknown means "free".
	Plan string
}

// Anonymous reports whether the identity has no user.
func (id Identity) Anonymous() bool { return id.UserID == "" }

// TenantSlug returns the tenant's slug, or "public" when there is none.
func (id Identity) TenantSlug() string {
	if id.Tenant.Slug == "" {
		return publicTenant
	}
	return id.Tenant.Slug
}

type identityKey struct{}

// WithIdentity returns a copy of ctx that carries id. Authentication
// middleware calls it before the limiter runs:
//
//	r = r.WithContext(throttle.WithIdentity(r.Context(), id))
func WithIdentity(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, &id)
}

// IdentityFrom returns the identity stored in ctx by WithIdentity, and false
// when there is none (an anonymous caller).
func IdentityFrom(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(*Identity)
	if !ok || id == nil {
		return Identity{}, false
	}
	return *id, true
}

// Subject is the owner of a counter: a user, a client IP or an API key.
type Subject struct {
	// Kind is "u" for a user, "ip" for a client address, "k" for an API key.
	Kind string
	// Value is the user ID, or the hash of the address or the API key.
	Value string
}

// Request is the view of one HTTP request that throttles get.
type Request struct {
	// HTTP is the request being served.
	HTTP *http.Request
	// Identity is the caller.
	Identity Identity
	// ClientIP is the client address, grouped by prefix for IPv6; it is not
	// valid when none could be derived.
	ClientIP netip.Addr
	// IPHash is the hashed client address that per-IP counters use; empty
	// when ClientIP is not valid.
	IPHash string
	// APIKeyHash is the hashed API key; empty when there is none.
	APIKeyHash string
	// Scopes lists the endpoint scopes of the handler being served.
	Scopes []string
	// Bulk reports whether the handler does bulk operations.
	Bulk bool
}

// Caller returns the subject of per-caller counters: the user when there is
// one, else the client IP. The second result is false when there is neither.
func (r *Request) Caller() (Subject, bool) {
	if r.Identity.UserID != "" {
		return Subject{Kind: subjectUser, Value: r.Identity.UserID}, true
	}
	if r.IPHash != "" {
		return Subject{Kind: subjectIP, Value: r.IPHash}, true
	}
	return Subject{}, false
}

// HasScope reports whether the handler was given the endpoint scope name.
func (r *Request) HasScope(name string) bool {
	for _, s := range r.Scopes {
		if s == name {
			return true
		}
	}
	return false
}
