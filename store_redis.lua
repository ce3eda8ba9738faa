-- Checks and records the counters of one request, all or nothing, in one
-- round trip. The arithmetic is that of window.go: a sliding window keeps at
-- most 11 buckets of "last-request-millis count", stored as one string of
-- space-separated integers, oldest bucket first.
--
-- KEYS: the counter keys (1..n), then the flag keys, then the denial key.
-- ARGV[1]  1 to record (Take), 0 to only read (Peek)
-- ARGV[2]  milliseconds added to the server clock (0 outside tests)
-- ARGV[3]  n, the number of counters
-- ARGV[4]  index in KEYS of the denial key, 0 for none
-- ARGV[5]  denial key TTL in milliseconds
-- then 5 values per counter: limit, period ms, window end ms (0 for a
-- sliding window), index in KEYS of its flag key (0 for none), shadow (0/1).
--
-- Returns {allowed, now, then per counter: applied, allowed, remaining,
-- reset after ms, retry after ms}.

local record = ARGV[1] == '1'
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000) + tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local denial_index = tonumber(ARGV[4])
local denial_ttl = tonumber(ARGV[5])
local slots = 10

local values = redis.call('MGET', unpack(KEYS, 1, n))

local allowed = true
local counters = {}
for i = 1, n do
  local base = 6 + (i - 1) * 5
  local c = {
    limit = tonumber(ARGV[base]),
    period = tonumber(ARGV[base + 1]),
    window_end = tonumber(ARGV[base + 2]),
    shadow = ARGV[base + 4] == '1',
    applied = true,
    used = 0,
    at = now,
  }
  local flag_index = tonumber(ARGV[base + 3])
  if flag_index > 0 then
    local flag = redis.call('GET', KEYS[flag_index])
    c.applied = flag ~= false and tonumber(flag) ~= nil and tonumber(flag) > now
  end
  if c.applied then
    local raw = values[i]
    if c.window_end > 0 then
      c.used = tonumber(raw) or 0
    else
      local lasts, counts = {}, {}
      if raw then
        local k = 0
        for number in string.gmatch(raw, '%d+') do
          k = k + 1
          if k % 2 == 1 then
            lasts[#lasts + 1] = tonumber(number)
          else
            counts[#counts + 1] = tonumber(number)
          end
        end
        if #counts < #lasts then
          lasts[#lasts] = nil
        end
      end
      -- A clock that stepped back behind the newest request reads as that
      -- request's time, so it never revives or resets the counter.
      if #lasts > 0 and lasts[#lasts] > c.at then
        c.at = lasts[#lasts]
      end
      local first = 1
      while first <= #lasts and lasts[first] + c.period <= c.at do
        first = first + 1
      end
      local live_lasts, live_counts = {}, {}
      for j = first, #lasts do
        live_lasts[#live_lasts + 1] = lasts[j]
        live_counts[#live_counts + 1] = counts[j]
        c.used = c.used + counts[j]
      end
      c.lasts, c.counts = live_lasts, live_counts
    end
    c.ok = c.used < c.limit
    if not c.ok and not c.shadow then
      allowed = false
    end
  end
  counters[i] = c
end

if record then
  if allowed then
    for i = 1, n do
      local c = counters[i]
      if c.applied then
        if c.window_end > 0 then
          c.used = c.used + 1
          redis.call('SET', KEYS[i], c.used, 'PX', math.max(1, c.window_end - now))
        else
          local width = math.max(1, math.ceil(c.period / slots))
          local last = #c.lasts
          if last > 0 and math.floor(c.lasts[last] / width) == math.floor(c.at / width) then
            c.counts[last] = c.counts[last] + 1
            c.lasts[last] = c.at
          else
            if last == slots + 1 then
              -- Only a change of the counter's period gets here; merging the
              -- two oldest buckets keeps the newer time, the safe side.
              c.counts[2] = c.counts[2] + c.counts[1]
              table.remove(c.lasts, 1)
              table.remove(c.counts, 1)
            end
            c.lasts[#c.lasts + 1] = c.at
            c.counts[#c.counts + 1] = 1
          end
          c.used = c.used + 1
          local parts = {}
          for j = 1, #c.lasts do
            parts[#parts + 1] = c.lasts[j] .. ' ' .. c.counts[j]
          end
          redis.call('SET', KEYS[i], table.concat(parts, ' '), 'PX', c.at + c.period - now)
        end
      end
    end
  elseif denial_index > 0 then
    if redis.call('INCR', KEYS[denial_index]) == 1 then
      redis.call('PEXPIRE', KEYS[denial_index], denial_ttl)
    end
  end
end

local reply = {allowed and 1 or 0, now}
for i = 1, n do
  local c = counters[i]
  if not c.applied then
    for _ = 1, 5 do
      reply[#reply + 1] = 0
    end
  else
    local reset_after, retry_after = 0, 0
    if c.window_end > 0 then
      if c.used > 0 then
        reset_after = c.window_end - now
      end
      if not c.ok then
        retry_after = c.window_end - now
      end
    else
      local count = #c.lasts
      if count > 0 then
        reset_after = c.lasts[count] + c.period - now
      end
      if not c.ok then
        -- Drop the oldest buckets until one request fits.
        local total = c.used
        retry_after = -1
        for j = 1, count do
          if total < c.limit then
            retry_after = c.lasts[j - 1] + c.period - now
            break
          end
          total = total - c.counts[j]
        end
        if retry_after < 0 then
          retry_after = c.lasts[count] + c.period - now
        end
      end
    end
    reply[#reply + 1] = 1
    reply[#reply + 1] = c.ok and 1 or 0
    reply[#reply + 1] = math.max(0, c.limit - c.used)
    reply[#reply + 1] = math.max(0, reset_after)
    reply[#reply + 1] = math.max(0, retry_after)
  end
end
return reply
