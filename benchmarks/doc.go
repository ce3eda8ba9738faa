// Package benchmarks compares the throttle rate limiter with other Go rate
// limiting libraries. It lives in its own module so that the other libraries
// never become dependencies of throttle itself. All of its code is in the
// _test.go files, so it runs only under go test -bench.
package benchmarks
