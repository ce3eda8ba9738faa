-- Checks and records the counters of one request, all or nothing, in one
-- round trip. The arithmetic is that of window.go.
--
-- A sliding window is one string: the total of its buckets, then up to 11
-- buckets "last-request-millis count", oldest first, all separated by
-- spaces, such as "7 1733340000123 5 1733340006001 2". The total lets the
-- common request read only the oldest and the newest bucket; the whole
-- string is parsed only to compute a denial's Retry-After.
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
-- reset after ms, retry after ms, recorded at ms (0 when not recorded)}.

local record = ARGV[1] == '1'
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000) + tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local denial_index = tonumber(ARGV[4])
local slots = 10

local values = redis.call('MGET', unpack(KEYS, 1, n))

-- Per-counter state, in parallel arrays.
local limit, period, window_end, shadow = {}, {}, {}, {}
local applied, ok, used, at = {}, {}, {}, {}
local body, newest_start, newest_last, newest_count, front = {}, {}, {}, {}, {}

local allowed = true
for i = 1, n do
  local base = 6 + (i - 1) * 5
  limit[i] = tonumber(ARGV[base])
  period[i] = tonumber(ARGV[base + 1])
  window_end[i] = tonumber(ARGV[base + 2])
  shadow[i] = ARGV[base + 4] == '1'
  at[i] = now
  used[i] = 0
  body[i] = ''
  newest_last[i] = false

  local flag_index = tonumber(ARGV[base + 3])
  applied[i] = true
  if flag_index > 0 then
    local flag = tonumber(redis.call('GET', KEYS[flag_index]))
    applied[i] = flag ~= nil and flag > now
  end

  if applied[i] then
    local raw = values[i]
    if window_end[i] > 0 then
      used[i] = tonumber(raw) or 0
    elseif raw then
      local _, header_end, total = string.find(raw, '^(%d+)')
      local start, last, count = string.match(raw, '() (%d+) (%d+)$')
      if total and start then
        last = tonumber(last)
        -- A clock that stepped back behind the newest request reads as that
        -- request's time, so it never revives or resets the counter.
        if last > now then
          at[i] = last
        end
        local total_used = tonumber(total)
        local pos = header_end + 1
        while true do
          local s, e, bucket_last, bucket_count = string.find(raw, '^ (%d+) (%d+)', pos)
          if not s or tonumber(bucket_last) + period[i] > at[i] then
            break
          end
          total_used = total_used - tonumber(bucket_count)
          pos = e + 1
        end
        if pos <= string.len(raw) then
          used[i] = total_used
          body[i] = string.sub(raw, pos)
          newest_start[i] = start - pos + 1
          newest_last[i] = last
          newest_count[i] = tonumber(count)
        end
      end
    end
    ok[i] = used[i] < limit[i]
    if not ok[i] and not shadow[i] then
      allowed = false
    end
  end
end

local recorded = {}
if record then
  if allowed then
    for i = 1, n do
      recorded[i] = 0
      if applied[i] then
        recorded[i] = at[i]
        used[i] = used[i] + 1
        if window_end[i] > 0 then
          redis.call('SET', KEYS[i], used[i], 'PX', math.max(1, window_end[i] - now))
        else
          local width = math.ceil(period[i] / slots)
          local last = newest_last[i]
          if last and math.floor(last / width) == math.floor(at[i] / width) then
            body[i] = string.sub(body[i], 1, newest_start[i] - 1) .. ' ' .. at[i] .. ' ' .. (newest_count[i] + 1)
          else
            body[i] = body[i] .. ' ' .. at[i] .. ' 1'
            local _, spaces = string.gsub(body[i], ' ', ' ')
            if spaces > 2 * (slots + 1) then
              -- Only a change of the counter's period gets here. Merging the
              -- two oldest buckets keeps the newer time, which is the safe side.
              local _, e1, c1 = string.find(body[i], '^ %d+ (%d+)')
              local s2, e2, l2, c2 = string.find(body[i], '^ (%d+) (%d+)', e1 + 1)
              body[i] = ' ' .. l2 .. ' ' .. (tonumber(c1) + tonumber(c2)) .. string.sub(body[i], e2 + 1)
            end
          end
          newest_last[i] = at[i]
          redis.call('SET', KEYS[i], used[i] .. body[i], 'PX', at[i] + period[i] - now)
        end
      end
    end
  elseif denial_index > 0 then
    if redis.call('INCR', KEYS[denial_index]) == 1 then
      redis.call('PEXPIRE', KEYS[denial_index], tonumber(ARGV[5]))
    end
  end
end

local reply = {allowed and 1 or 0, now}
for i = 1, n do
  if not applied[i] then
    for _ = 1, 6 do
      reply[#reply + 1] = 0
    end
  else
    local reset_after, retry_after = 0, 0
    if window_end[i] > 0 then
      if used[i] > 0 then
        reset_after = window_end[i] - now
      end
      if not ok[i] then
        retry_after = window_end[i] - now
      end
    else
      if newest_last[i] then
        reset_after = newest_last[i] + period[i] - now
      end
      if not ok[i] then
        -- Drop the oldest buckets until one more request fits.
        local total = used[i]
        retry_after = reset_after
        for bucket_last, bucket_count in string.gmatch(body[i], ' (%d+) (%d+)') do
          total = total - tonumber(bucket_count)
          if total < limit[i] then
            retry_after = tonumber(bucket_last) + period[i] - now
            break
          end
        end
      end
    end
    reply[#reply + 1] = 1
    reply[#reply + 1] = ok[i] and 1 or 0
    reply[#reply + 1] = math.max(0, limit[i] - used[i])
    reply[#reply + 1] = math.max(0, reset_after)
    reply[#reply + 1] = math.max(0, retry_after)
    reply[#reply + 1] = recorded[i] or 0
  end
end
return reply
