package benchmarks

import (
	"context"
	"strconv"
	"strings"
	"testing"
)

// costDecisions is how many decisions each library makes for the Redis
// cost measurement. Enough to average out the first calls, few enough to
// finish in seconds.
const costDecisions = 5000

// TestRedisCost measures what each library costs the Redis server per
// decision: the CPU time Redis reports in INFO commandstats, summed over
// every command (a script's inner commands included), the number of
// commands a client sends, and the memory of one client's keys (MEMORY
// USAGE). It resets the server's statistics, so it must run against a
// server used by nothing else. Run it with -v to see the table.
func TestRedisCost(t *testing.T) {
	run := newRedisRun(t)
	ctx := context.Background()

	libraries := []struct {
		name   string
		source func() deciderSource
		// patterns find the keys of one client, for MEMORY USAGE.
		patterns func(key string) []string
	}{
		{"throttle", func() deciderSource { return run.throttleRedisDecider(t) }, func(key string) []string {
			// The user's plan, burst, daily and role counters, and the
			// IP-burst counter of its address.
			return []string{run.prefix + ":*:{u." + key + "}*", run.prefix + ":ip_burst:*"}
		}},
		{"ulule", func() deciderSource { return run.ululeRedisDecider(t) }, func(key string) []string {
			return []string{run.prefix + ":ulule*" + key}
		}},
		{"redis_rate", run.redisRateDecider, func(key string) []string {
			return []string{"rate:" + run.prefix + ":redis_rate:" + key}
		}},
	}

	t.Logf("%-11s %14s %18s %16s %8s %14s", "library", "usec/decision", "commands/decision", "client calls", "keys", "bytes/client")
	for _, lib := range libraries {
		d := lib.source()()
		if err := run.client.ConfigResetStat(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < costDecisions; i++ {
			allowed, err := d(keys[i%keyCount])
			if err != nil || !allowed {
				t.Fatalf("%s: decision %d failed (allowed=%v, err=%v)", lib.name, i, allowed, err)
			}
		}
		stats, err := run.client.Info(ctx, "commandstats").Result()
		if err != nil {
			t.Fatal(err)
		}
		usec, calls, topLevel := parseCommandStats(stats)
		memory := int64(0)
		var found []string
		for _, pattern := range lib.patterns(keys[1]) {
			matched, err := run.client.Keys(ctx, pattern).Result()
			if err != nil {
				t.Fatal(err)
			}
			found = append(found, matched...)
		}
		for _, k := range found {
			n, err := run.client.MemoryUsage(ctx, k).Result()
			if err != nil {
				t.Fatal(err)
			}
			memory += n
		}
		t.Logf("%-11s %14.2f %18.2f %16.2f %8d %14d", lib.name,
			usec/costDecisions, float64(calls)/costDecisions, float64(topLevel)/costDecisions, len(found), memory)
	}
}

// parseCommandStats sums INFO commandstats: the microseconds of every
// command except INFO and CONFIG, the number of commands, and the number
// of EVAL, EVALSHA and plain commands sent by clients (script-internal
// commands are counted by Redis too, so they are told apart by name: a
// client of these libraries sends only scripts and never GET or SET itself).
func parseCommandStats(info string) (usec float64, calls, topLevel int64) {
	for _, line := range strings.Split(info, "\n") {
		line = strings.TrimSpace(line)
		name, fields, ok := strings.Cut(line, ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") {
			continue
		}
		command := strings.TrimPrefix(name, "cmdstat_")
		if strings.HasPrefix(command, "info") || strings.HasPrefix(command, "config") {
			continue
		}
		var n int64
		var u float64
		for _, field := range strings.Split(fields, ",") {
			key, value, _ := strings.Cut(field, "=")
			switch key {
			case "calls":
				n, _ = strconv.ParseInt(value, 10, 64)
			case "usec":
				u, _ = strconv.ParseFloat(value, 64)
			}
		}
		calls += n
		if strings.HasPrefix(command, "eval") {
			topLevel += n
			// EVAL and EVALSHA time includes the commands the script runs.
			usec += u
		}
	}
	return usec, calls, topLevel
}
