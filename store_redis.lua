-- Checks and records the counters of one request, all or nothing, in one
-- round trip. The arithmetic is that of window.go.
--
-- A sliding window is one string: the total of its buckets, then up to 11
-- buckets "last-request-millis count", oldest first, all separated by
-- spaces, such as "7 1733340000123 5 1733340006001 2". The total lets the
-- common request read only the oldest and the newest bucket; the whole
-- string is parsed only to compute a denial's Retry-After. Lua tables and
-- number-to-string conversions are the expensive part of a script, so the
-- state of all counters lives in one flat table and the current time is
-- converted to a string once.
--
-- KEYS: the counter keys (1..n), then the flag keys, then the denial key;
-- one MGET reads the counters and the flags.
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
local now_text = string.format('%d', now)
local n = tonumber(ARGV[3])
local denial_index = tonumber(ARGV[4])
local slots = 10

local read_keys = #KEYS
if denial_index > 0 then
  read_keys = read_keys - 1
end
local values = redis.call('MGET', unpack(KEYS, 1, read_keys))

-- st holds, per counter i at offset o = (i - 1) * 8:
-- o+1 applied, o+2 allowed, o+3 used, o+4 at, o+5 body (the buckets after
-- the total, pruned), o+6 start of the newest bucket in body, o+7 its last
-- time, o+8 its count (o+7 is false when the window is empty).
local st = {}
local allowed = true
for i = 1, n do
  local base = 6 + (i - 1) * 5
  local o = (i - 1) * 8
  local limit = tonumber(ARGV[base])
  local window_end = tonumber(ARGV[base + 2])
  local applied = true
  local used, at, body, newest_start, newest_last, newest_count = 0, now, '', 0, false, 0

  local flag_index = tonumber(ARGV[base + 3])
  if flag_index > 0 then
    local flag = tonumber(values[flag_index])
    applied = flag ~= nil and flag > now
  end

  if applied then
    local raw = values[i]
    if window_end > 0 then
      used = tonumber(raw) or 0
    elseif raw then
      local _, header_end, total = string.find(raw, '^(%d+)')
      local start, last, count = string.match(raw, '() (%d+) (%d+)$')
      if total and start then
        last = tonumber(last)
        -- A clock that stepped back behind the newest request reads as that
        -- request's time, so it never revives or resets the counter.
        if last > now then
          at = last
        end
        local period = tonumber(ARGV[base + 1])
        used = tonumber(total)
        local pos = header_end + 1
        while true do
          local s, e, bucket_last, bucket_count = string.find(raw, '^ (%d+) (%d+)', pos)
          if not s or tonumber(bucket_last) + period > at then
            break
          end
          used = used - tonumber(bucket_count)
          pos = e + 1
        end
        if pos <= string.len(raw) then
          body = string.sub(raw, pos)
          newest_start = start - pos + 1
          newest_last = last
          newest_count = tonumber(count)
        else
          used = 0
        end
      end
    end
    local ok = used < limit
    if not ok and ARGV[base + 4] ~= '1' then
      allowed = false
    end
    st[o + 2] = ok
  end
  st[o + 1], st[o + 3], st[o + 4], st[o + 5], st[o + 6], st[o + 7], st[o + 8] =
    applied, used, at, body, newest_start, newest_last, newest_count
end

if record then
  if allowed then
    for i = 1, n do
      local o = (i - 1) * 8
      if st[o + 1] then
        local base = 6 + (i - 1) * 5
        local window_end = tonumber(ARGV[base + 2])
        local used = st[o + 3] + 1
        st[o + 3] = used
        if window_end > 0 then
          redis.call('SET', KEYS[i], used, 'PX', math.max(1, window_end - now))
        else
          local period = tonumber(ARGV[base + 1])
          local at = st[o + 4]
          local at_text = now_text
          if at ~= now then
            at_text = string.format('%d', at)
          end
          local body = st[o + 5]
          local last = st[o + 7]
          local width = math.ceil(period / slots)
          if last and math.floor(last / width) == math.floor(at / width) then
            body = string.sub(body, 1, st[o + 6] - 1) .. ' ' .. at_text .. ' ' .. (st[o + 8] + 1)
          else
            body = body .. ' ' .. at_text .. ' 1'
            local _, spaces = string.gsub(body, ' ', ' ')
            if spaces > 2 * (slots + 1) then
              -- Only a change of the counter's period gets here. Merging the
              -- two oldest buckets keeps the newer time, which is the safe side.
              local _, e1, c1 = string.find(body, '^ %d+ (%d+)')
              local _, e2, l2, c2 = string.find(body, '^ (%d+) (%d+)', e1 + 1)
              body = ' ' .. l2 .. ' ' .. (tonumber(c1) + tonumber(c2)) .. string.sub(body, e2 + 1)
            end
          end
          st[o + 5] = body
          st[o + 7] = at
          redis.call('SET', KEYS[i], used .. body, 'PX', at + period - now)
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
  local o = (i - 1) * 8
  if not st[o + 1] then
    for _ = 1, 6 do
      reply[#reply + 1] = 0
    end
  else
    local base = 6 + (i - 1) * 5
    local limit = tonumber(ARGV[base])
    local period = tonumber(ARGV[base + 1])
    local window_end = tonumber(ARGV[base + 2])
    local ok, used, last = st[o + 2], st[o + 3], st[o + 7]
    local reset_after, retry_after = 0, 0
    if window_end > 0 then
      if used > 0 then
        reset_after = window_end - now
      end
      if not ok then
        retry_after = window_end - now
      end
    else
      if last then
        reset_after = last + period - now
      end
      if not ok then
        -- Drop the oldest buckets until one more request fits.
        local total = used
        retry_after = reset_after
        for bucket_last, bucket_count in string.gmatch(st[o + 5], ' (%d+) (%d+)') do
          total = total - tonumber(bucket_count)
          if total < limit then
            retry_after = tonumber(bucket_last) + period - now
            break
          end
        end
      end
    end
    local recorded = 0
    if record and allowed then
      recorded = st[o + 4]
    end
    reply[#reply + 1] = 1
    reply[#reply + 1] = ok and 1 or 0
    reply[#reply + 1] = math.max(0, limit - used)
    reply[#reply + 1] = math.max(0, reset_after)
    reply[#reply + 1] = math.max(0, retry_after)
    reply[#reply + 1] = recorded
  end
end
return reply
