-- motia-state: the state operations of one group, applied atomically by Redis.
--
-- The Redis twin of motia_state/ops.py: every rule there has its mirror
-- here, under the same name, and the shared vectors prove they agree.
--
-- Values never pass through cjson: Lua numbers are doubles and cjson keeps
-- 14 significant digits and turns [] into {}. Every stored value is compact
-- JSON text produced by msgspec in Python, and this program works on the
-- text itself: it scans element boundaries, splices text, adds integers as
-- decimal strings and formats floats to round-trip exactly.
--
-- KEYS[1]   the group's hash (field = key, value = JSON text)
-- ARGV[1]   "<mode> <changes> <ttl> <max bytes>", one argument because each
--           argument costs the client time to pack:
--           changes "1" to return what changed (for change events);
--           ttl in milliseconds for the group after a write ("0": none);
--           max bytes: the value size limit.
--
-- Modes, and what follows ARGV[1] in each:
--
--   one     a single operation: type, key, arg1, arg2 (trailing empty
--           slots may be left out). Without changes the reply is one bulk
--           string, "=" .. result or "!" .. code .. " " .. message (a
--           client parses that much faster than an array); with changes,
--           the array form below.
--   tx      a transaction: operations of 4 slots each (type, key, arg1,
--           arg2), all or nothing; the first failure, or a compareAndSwap
--           that does not match, aborts it and nothing is written.
--   batch   operations of 4 slots each, each applied on its own, in order:
--           one that fails stores nothing and the others still run; each
--           result is "=" .. result or "!" .. code .. " " .. message.
--   commit  the end of a transaction computed by the client (one holding
--           update functions): (key, expected, new) triples; expected ""
--           = was missing, new "" = delete, "=" = only read. Writes only if
--           every key still holds its expected text. Reply 1, or 0 when
--           something moved.
--   clear   removes the group. Reply: its entries, field and value
--           alternating.
--
-- Reply of one (with changes), tx and batch:
--   {"OK", n, result_1 .. result_n, [key, op, old, new]*}
--   (old "" = was missing, new "" = deleted; the change list only with
--   changes "1"), or {"ERR", index (0-based), code, message}.

-- Set at the start of each call (run, below); read by the rules.
local max_bytes

local Failure = {}

local function fail(code, message)
  error(setmetatable({ code = code, message = message }, Failure))
end

-- ---------------------------------------------------------------- scanning

-- The kind of a value, from the first byte of its compact JSON text.
local function kind(t)
  local b = t:byte(1)
  if b == 91 then return 'array' end
  if b == 123 then return 'object' end
  if b == 34 then return 'string' end
  if b == 116 or b == 102 then return 'boolean' end
  if b == 110 then return 'null' end
  return 'number'
end

local ARTICLE = { array = 'an array', object = 'an object', string = 'a string', boolean = 'a boolean',
  null = 'null', number = 'a number' }

-- The index just past the JSON value that starts at i (compact text).
local function skip(s, i)
  local b = s:byte(i)
  if b == 34 then
    local j = i + 1
    while true do
      local q = s:find('["\\]', j)
      if s:byte(q) == 92 then j = q + 2 else return q + 1 end
    end
  elseif b == 91 or b == 123 then
    local depth, j = 0, i
    while true do
      local q = s:find('[%[%]{}"]', j)
      local c = s:byte(q)
      if c == 34 then
        j = skip(s, q)
      elseif c == 91 or c == 123 then
        depth = depth + 1
        j = q + 1
      else
        depth = depth - 1
        j = q + 1
        if depth == 0 then return j end
      end
    end
  end
  local q = s:find('[,%]}]', i)
  return q or (#s + 1)
end

-- Top-level elements of an array text: {{first, last}, ...}.
local function elements(s)
  local out = {}
  if s == '[]' then return out end
  local i = 2
  while true do
    local j = skip(s, i)
    out[#out + 1] = { i, j - 1 }
    if s:byte(j) ~= 44 then return out end
    i = j + 1
  end
end

-- Top-level members of an object text: {{key text, key start, value first, value last}, ...}.
local function members(s)
  local out = {}
  if s == '{}' then return out end
  local i = 2
  while true do
    local k = skip(s, i)
    local j = skip(s, k + 1)
    out[#out + 1] = { s:sub(i, k - 1), i, k + 1, j - 1 }
    if s:byte(j) ~= 44 then return out end
    i = j + 1
  end
end

-- ------------------------------------------------------------------ numbers

local function is_integer_text(t)
  return not t:find('[%.eE]')
end

-- The shortest of %.15g..%.17g that reads back as x; integral floats keep a
-- ".0" so that they stay floats (2.0 is not 2), as in Python.
local function format_float(x)
  if x ~= x or x == math.huge or x == -math.huge then return nil end
  local s
  for p = 15, 17 do
    s = string.format('%.' .. p .. 'g', x)
    if tonumber(s) == x then break end
  end
  if not s:find('[%.eE]') then s = s .. '.0' end
  return s
end

local function magnitude_compare(a, b)
  if #a ~= #b then return #a < #b and -1 or 1 end
  if a == b then return 0 end
  return a < b and -1 or 1
end

local function magnitude_add(a, b)
  local out, carry = {}, 0
  local i, j = #a, #b
  while i > 0 or j > 0 or carry > 0 do
    local d = carry + (i > 0 and a:byte(i) - 48 or 0) + (j > 0 and b:byte(j) - 48 or 0)
    out[#out + 1] = string.char(48 + d % 10)
    carry = math.floor(d / 10)
    i, j = i - 1, j - 1
  end
  return string.reverse(table.concat(out))
end

-- a - b for magnitudes with a > b.
local function magnitude_sub(a, b)
  local out, borrow = {}, 0
  local i, j = #a, #b
  while i > 0 do
    local d = (a:byte(i) - 48) - borrow - (j > 0 and b:byte(j) - 48 or 0)
    if d < 0 then d, borrow = d + 10, 1 else borrow = 0 end
    out[#out + 1] = string.char(48 + d)
    i, j = i - 1, j - 1
  end
  local s = string.reverse(table.concat(out)):gsub('^0+', '')
  return s
end

-- Exact sum of two integer texts, any size (Lua numbers are doubles).
local function integer_add(a, b)
  if #a < 16 and #b < 16 then
    return string.format('%d', tonumber(a) + tonumber(b))
  end
  local na, nb = a:byte(1) == 45, b:byte(1) == 45
  local ma, mb = na and a:sub(2) or a, nb and b:sub(2) or b
  if na == nb then
    return (na and '-' or '') .. magnitude_add(ma, mb)
  end
  local c = magnitude_compare(ma, mb)
  if c == 0 then return '0' end
  if c > 0 then return (na and '-' or '') .. magnitude_sub(ma, mb) end
  return (nb and '-' or '') .. magnitude_sub(mb, ma)
end

-- ----------------------------------------------------------------- equality

-- An integer text equals a float iff the float is integral with the same digits.
local function integer_equals_float(int_text, f)
  if f ~= f or f == math.huge or f == -math.huge or math.floor(f) ~= f then return false end
  if f == 0 then return int_text == '0' end
  return string.format('%.0f', f) == int_text
end

local function number_equal(a, b)
  local ai, bi = is_integer_text(a), is_integer_text(b)
  if ai and bi then return a == b end
  if ai then return integer_equals_float(a, tonumber(b)) end
  if bi then return integer_equals_float(b, tonumber(a)) end
  return tonumber(a) == tonumber(b)
end

-- JSON equality (json_equal in values.py): 1 == 1.0, true ~= 1, objects by pairs.
local function json_equal(a, b)
  if a == b then return true end
  local ka = kind(a)
  if ka ~= kind(b) then return false end
  if ka == 'number' then return number_equal(a, b) end
  if ka == 'array' then
    local ea, eb = elements(a), elements(b)
    if #ea ~= #eb then return false end
    for n = 1, #ea do
      if not json_equal(a:sub(ea[n][1], ea[n][2]), b:sub(eb[n][1], eb[n][2])) then return false end
    end
    return true
  end
  if ka == 'object' then
    local ma, mb = members(a), members(b)
    if #ma ~= #mb then return false end
    local other = {}
    for _, m in ipairs(mb) do other[m[1]] = b:sub(m[3], m[4]) end
    for _, m in ipairs(ma) do
      local v = other[m[1]]
      if v == nil or not json_equal(a:sub(m[3], m[4]), v) then return false end
    end
    return true
  end
  -- strings, booleans, null: one canonical text each.
  return false
end

-- ---------------------------------------------------------------- operations
-- Each takes the current text (false when missing) and the op's arguments,
-- and returns new text (false: delete, nil: unchanged) and the result text.

local function check_size(new)
  if #new > max_bytes then
    fail('LIMIT_EXCEEDED', 'the new value would be larger than ' .. max_bytes .. ' bytes encoded')
  end
end

local function current_array(cur, op)
  if not cur or cur == 'null' then return '[]' end
  local k = kind(cur)
  if k ~= 'array' then fail('TYPE_MISMATCH', 'cannot ' .. op .. ': stored value is ' .. ARTICLE[k] .. ', not an array') end
  return cur
end

local function current_object(cur, op)
  if not cur or cur == 'null' then return nil end
  local k = kind(cur)
  if k ~= 'object' then fail('TYPE_MISMATCH', 'cannot ' .. op .. ': stored value is ' .. ARTICLE[k] .. ', not an object') end
  return cur
end

local apply = {}

function apply.get(cur) return nil, cur or 'null' end
function apply.exists(cur) return nil, cur and 'true' or 'false' end
function apply.set(cur, value) return value, value end

function apply.delete(cur)
  if not cur then return nil, 'null' end
  return false, cur
end

function apply.increment(cur, delta)
  local new
  if not cur or cur == 'null' then
    new = delta
  elseif kind(cur) == 'number' then
    if is_integer_text(cur) and is_integer_text(delta) then
      new = integer_add(cur, delta)
      -- MAX_INT_DIGITS in values.py: what JSON text of an int may hold here.
      if #new - (new:byte(1) == 45 and 1 or 0) > 4300 then
        fail('LIMIT_EXCEEDED', 'increment result has more than 4300 digits')
      end
    else
      new = format_float(tonumber(cur) + tonumber(delta))
      if not new then fail('LIMIT_EXCEEDED', 'increment result is out of the range of a JSON number') end
    end
  else
    fail('TYPE_MISMATCH', 'cannot increment: stored value is ' .. ARTICLE[kind(cur)] .. ', not a number')
  end
  return new, new
end
apply.decrement = apply.increment -- the delta arrives negated

function apply.compareAndSwap(cur, expected, value)
  if json_equal(cur or 'null', expected) then return value, 'true' end
  return nil, 'false'
end
-- The swap that ends an optimistic update(fn): the same rule, and its change
-- event says "update". Only the adapter sends it; records never carry it.
apply.update = apply.compareAndSwap

function apply.push(cur, items)
  local array = current_array(cur, 'push')
  if items == '' then return nil, array end
  local new = array == '[]' and ('[' .. items .. ']') or (array:sub(1, -2) .. ',' .. items .. ']')
  check_size(new)
  return new, new
end

function apply.unshift(cur, items)
  local array = current_array(cur, 'unshift')
  if items == '' then return nil, array end
  local new = array == '[]' and ('[' .. items .. ']') or ('[' .. items .. ',' .. array:sub(2))
  check_size(new)
  return new, new
end

local function pop_generic(cur, from_head, op)
  local array = current_array(cur, op)
  local e = elements(array)
  if #e == 0 then return nil, 'null' end
  if from_head then
    local value = array:sub(e[1][1], e[1][2])
    return (#e == 1) and '[]' or ('[' .. array:sub(e[2][1])), value
  end
  local value = array:sub(e[#e][1], e[#e][2])
  return (#e == 1) and '[]' or (array:sub(1, e[#e - 1][2]) .. ']'), value
end

function apply.pop(cur) return pop_generic(cur, false, 'pop') end
function apply.shift(cur) return pop_generic(cur, true, 'shift') end

function apply.setField(cur, field, value)
  local obj = current_object(cur, 'setField')
  local new
  if not obj or obj == '{}' then
    new = '{' .. field .. ':' .. value .. '}'
  else
    for _, m in ipairs(members(obj)) do
      if m[1] == field then
        new = obj:sub(1, m[3] - 1) .. value .. obj:sub(m[4] + 1)
        break
      end
    end
    new = new or (obj:sub(1, -2) .. ',' .. field .. ':' .. value .. '}')
  end
  check_size(new)
  return new, new
end

function apply.deleteField(cur, field)
  local obj = current_object(cur, 'deleteField')
  if not obj then return nil, '{}' end
  local m = members(obj)
  for n = 1, #m do
    if m[n][1] == field then
      local new
      if #m == 1 then
        new = '{}'
      elseif n < #m then
        new = obj:sub(1, m[n][2] - 1) .. obj:sub(m[n + 1][2])
      else
        new = obj:sub(1, m[n - 1][4]) .. '}'
      end
      return new, new
    end
  end
  return nil, obj
end

-- -------------------------------------------------------------------- modes

local function failure_text(failure)
  return '!' .. failure.code .. ' ' .. failure.message
end

-- One op on its stored entry, written back if it changed anything: the
-- step of both 'one' and 'batch'. Returns the Failure (or nil), the result,
-- and, when it wrote, the old and new texts ('' for missing).
local function apply_stored(H, op, key, a1, a2)
  local cur = redis.call('HGET', H, key)
  local ok, new, result = pcall(apply[op], cur, a1, a2)
  if not ok then
    if getmetatable(new) ~= Failure then error(new) end
    return new
  end
  if new == nil or (new == false and not cur) then return nil, result end
  if new then redis.call('HSET', H, key, new) else redis.call('HDEL', H, key) end
  return nil, result, cur or '', new or ''
end

-- How a transaction names its failed operation (describe_op in ops.py).
local function transaction_failed(i, op, key, code, message)
  return { 'ERR', i - 1, code, 'operation ' .. (i - 1) .. ' (' .. op .. ' ' .. string.format('%q', key) .. '): ' .. message }
end

local mode_run = {}

function mode_run.one(H, ARGV, ttl, want_changes)
  local op, key = ARGV[2], ARGV[3]
  local failure, result, old, new = apply_stored(H, op, key, ARGV[4] or '', ARGV[5] or '')
  if failure then
    if want_changes then return { 'ERR', 0, failure.code, failure.message } end
    return failure_text(failure)
  end
  if old and ttl > 0 then redis.call('PEXPIRE', H, ttl) end
  if not want_changes then return '=' .. result end
  if not old then return { 'OK', 1, result } end
  return { 'OK', 1, result, key, op, old, new }
end

function mode_run.batch(H, ARGV, ttl, want_changes)
  -- What a pipeline of 'one' calls would do, in a single call, which also
  -- works through a cluster client (redis-py refuses to pipeline scripts
  -- in a cluster).
  local n = (#ARGV - 1) / 4
  local reply = { 'OK', n }
  local changed = {}
  local wrote_any = false
  for i = 1, n do
    local base = 1 + (i - 1) * 4
    local op, key = ARGV[base + 1], ARGV[base + 2]
    local failure, result, old, new = apply_stored(H, op, key, ARGV[base + 3], ARGV[base + 4])
    if failure then
      reply[#reply + 1] = failure_text(failure)
    else
      reply[#reply + 1] = '=' .. result
      if old then
        wrote_any = true
        if want_changes then
          changed[#changed + 1] = key
          changed[#changed + 1] = op
          changed[#changed + 1] = old
          changed[#changed + 1] = new
        end
      end
    end
  end
  if wrote_any and ttl > 0 then redis.call('PEXPIRE', H, ttl) end
  for _, v in ipairs(changed) do reply[#reply + 1] = v end
  return reply
end

function mode_run.tx(H, ARGV, ttl, want_changes)
  local staged = {}   -- key -> text, or false when deleted
  local original = {} -- key -> text at the start, or false when missing
  local last_op = {}  -- key -> the type of the last op that wrote it
  local order = {}    -- keys in the order of their first write
  local results = {}
  for i = 1, (#ARGV - 1) / 4 do
    local base = 1 + (i - 1) * 4
    local op, key = ARGV[base + 1], ARGV[base + 2]
    local cur = staged[key]
    if cur == nil then cur = redis.call('HGET', H, key) end
    local ok, new, result = pcall(apply[op], cur, ARGV[base + 3], ARGV[base + 4])
    if not ok then
      if getmetatable(new) ~= Failure then error(new) end
      return transaction_failed(i, op, key, new.code, new.message)
    end
    if op == 'compareAndSwap' and result == 'false' then
      return transaction_failed(i, op, key, 'CONFLICT', 'expected value did not match')
    end
    if new ~= nil and not (new == false and not cur) then
      if original[key] == nil then
        original[key] = cur
        order[#order + 1] = key
      end
      staged[key] = new
      last_op[key] = op
    end
    results[i] = result
  end
  -- Everything checked: now write.
  local reply = { 'OK', #results }
  for _, r in ipairs(results) do reply[#reply + 1] = r end
  local wrote = false
  for _, key in ipairs(order) do
    local new = staged[key]
    -- Created and removed again inside one transaction: nothing happened.
    if new or original[key] then
      if new then redis.call('HSET', H, key, new) else redis.call('HDEL', H, key) end
      wrote = true
      if want_changes then
        reply[#reply + 1] = key
        reply[#reply + 1] = last_op[key]
        reply[#reply + 1] = original[key] or ''
        reply[#reply + 1] = new or ''
      end
    end
  end
  if wrote and ttl > 0 then redis.call('PEXPIRE', H, ttl) end
  return reply
end

function mode_run.commit(H, ARGV, ttl)
  for i = 2, #ARGV, 3 do
    if (redis.call('HGET', H, ARGV[i]) or '') ~= ARGV[i + 1] then return 0 end
  end
  local wrote = false
  for i = 2, #ARGV, 3 do
    local new = ARGV[i + 2]
    if new == '' then
      redis.call('HDEL', H, ARGV[i])
      wrote = true
    elseif new ~= '=' then
      redis.call('HSET', H, ARGV[i], new)
      wrote = true
    end
  end
  if wrote and ttl > 0 then redis.call('PEXPIRE', H, ttl) end
  return 1
end

function mode_run.clear(H)
  local all = redis.call('HGETALL', H)
  redis.call('DEL', H)
  return all
end

local function run(KEYS, ARGV)
  local mode, changes, ttl, max_text = string.match(ARGV[1], '^(%a+) (%d) (%d+) (%d+)$')
  max_bytes = tonumber(max_text)
  return mode_run[mode](KEYS[1], ARGV, tonumber(ttl), changes == '1')
end

-- As a script (EVALSHA) this file ends by running; as a function library
-- (FUNCTION LOAD, Redis >= 7) the loader replaces this last line.
return run(KEYS, ARGV)
