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
-- Writing modes (one, tx, batch, commit, clear):
--
-- KEYS[1]   the group's hash (field = key, value = JSON text)
-- KEYS[2]   the feed stream of the group's shard
-- KEYS[3]   the group index of the group's shard (a sorted set of names)
--           (the three share one hash tag: one slot on a Redis Cluster)
-- ARGV[1]   "<mode> <changes> <ttl> <max bytes> <max result bytes>
--           <feed records> <feed bytes>", one argument because each
--           argument costs the client time to pack:
--           changes "1" to return what changed (for change events);
--           ttl in milliseconds for the group after a write ("0": none);
--           max bytes: the value size limit; max result bytes: the limit
--           on the encoded results of a transaction or batch; feed
--           records and feed bytes: the shard's feed retention ("0"
--           records: no feed records, as for the runtime's own writes).
-- ARGV[2]   the group's name (for its index and its feed records)
-- ARGV[3]   the writer's "<depth>[ <origin JSON>]", stamped on each record
--
-- Every write also keeps the group index (a group is listed while it has
-- entries) and records one feed record per entry written, in the same
-- call: there is never a change without its record. A call's records go
-- into one stream entry at its end (flush), whatever their number.
--
-- Modes, and what follows ARGV[3] in each:
--
--   one     a single operation: type, key, arg1, arg2 (trailing empty
--           slots may be left out). Without changes the reply is one bulk
--           string, "=" .. result or "!" .. code .. " " .. message (a
--           client parses that much faster than an array); with changes,
--           the array form below.
--   tx      a transaction: operations of 4 slots each (type, key, arg1,
--           arg2), all or nothing; the first failure, or a compareAndSwap
--           or check that does not hold, aborts it and nothing is written.
--   batch   operations of 4 slots each, each applied on its own, in order:
--           one that fails stores nothing and the others still run; each
--           result is "=" .. result or "!" .. code .. " " .. message.
--           Written at the end, as a transaction is (run_staged).
--   commit  the end of a transaction or batch computed by the client (one
--           holding update functions): a count n, then n (key, expected,
--           new) triples; expected "" = was missing, new "" = delete, "="
--           = only read; then its feed records as (key, op, old, new).
--           Writes only if every key still holds its expected text. Reply
--           1, or 0 when something moved.
--   clear   removes the group. Reply: its entries, field and value
--           alternating.
--
-- Reply of one (with changes), tx and batch:
--   {"OK", n, result_1 .. result_n, [key, op, old, new]*}
--   (old "" = was missing, new "" = deleted; the change list only with
--   changes "1"), or {"ERR", index (0-based), code, message}, or, when
--   the results would pass max result bytes, {"TOO_LARGE", bytes} with
--   nothing written.
--
-- Reading modes (info, history, groups, page): ARGV[1] is the mode alone;
-- each is described where it is defined.

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

-- Magnitudes are added and subtracted 14 decimal digits at a time: a
-- double holds the sum of two such chunks exactly.
local CHUNK, CHUNK_BASE = 14, 1e14

local function chunk(s, last)
  if last < 1 then return 0 end
  return tonumber(s:sub(math.max(1, last - CHUNK + 1), last))
end

-- The digits of chunks listed lowest first, without leading zeros.
local function join_chunks(out)
  local n = #out
  for k = 1, math.floor(n / 2) do out[k], out[n + 1 - k] = out[n + 1 - k], out[k] end
  local s = table.concat(out):gsub('^0+', '')
  return s == '' and '0' or s
end

local function magnitude_add(a, b)
  local out, carry = {}, 0
  local i, j = #a, #b
  while i > 0 or j > 0 or carry > 0 do
    local d = chunk(a, i) + chunk(b, j) + carry
    if d >= CHUNK_BASE then d, carry = d - CHUNK_BASE, 1 else carry = 0 end
    out[#out + 1] = string.format('%014.0f', d)
    i, j = i - CHUNK, j - CHUNK
  end
  return join_chunks(out)
end

-- a - b for magnitudes with a > b.
local function magnitude_sub(a, b)
  local out, borrow = {}, 0
  local i, j = #a, #b
  while i > 0 do
    local d = chunk(a, i) - chunk(b, j) - borrow
    if d < 0 then d, borrow = d + CHUNK_BASE, 1 else borrow = 0 end
    out[#out + 1] = string.format('%014.0f', d)
    i, j = i - CHUNK, j - CHUNK
  end
  return join_chunks(out)
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

-- JSON equality (json_equal in values.py): 1 == 1.0, true ~= 1, objects by
-- pairs. Containers are walked side by side and the walk stops at the
-- first difference, so comparing a large stored value with a small one
-- costs about the small one's size.
local function json_equal(a, b)
  if a == b then return true end
  local ka = kind(a)
  if ka ~= kind(b) then return false end
  if ka == 'number' then return number_equal(a, b) end
  if ka == 'array' then
    if a == '[]' or b == '[]' then return false end
    local i, j = 2, 2
    while true do
      local ni, nj = skip(a, i), skip(b, j)
      if not json_equal(a:sub(i, ni - 1), b:sub(j, nj - 1)) then return false end
      local ca = a:byte(ni)
      if ca ~= b:byte(nj) then return false end -- one ends, the other goes on
      if ca == 93 then return true end
      i, j = ni + 1, nj + 1
    end
  end
  if ka == 'object' then
    if #a > #b then a, b = b, a end
    -- The shorter text's members in a table, the other's read one by one.
    local mine, count = {}, 0
    for _, m in ipairs(members(a)) do
      mine[m[1]] = a:sub(m[3], m[4])
      count = count + 1
    end
    if b == '{}' then return count == 0 end
    local seen, i = 0, 2
    while true do
      local k = skip(b, i)
      local j = skip(b, k + 1)
      local v = mine[b:sub(i, k - 1)]
      seen = seen + 1
      if v == nil or seen > count or not json_equal(v, b:sub(k + 1, j - 1)) then return false end
      if b:byte(j) ~= 44 then return seen == count end
      i = j + 1
    end
  end
  -- strings, booleans, null: one canonical text each.
  return false
end

-- --------------------------------------------------------------- predicates
-- The twin of predicates.py: predicate_holds evaluates the normalized
-- predicate (JSON text of {"op", "value", "path"} or {"all"}, {"any"},
-- {"not"}) against an entry's text.

-- Byte order, which for UTF-8 is code-point order. Lua's own string
-- comparison follows the server's collation locale, so it is not used.
local function bytes_compare(a, b)
  if a == b then return 0 end
  local n = math.min(#a, #b)
  local i = 1
  while i <= n do
    local j = math.min(i + 63, n)
    if a:sub(i, j) ~= b:sub(i, j) then
      for k = i, j do
        local x, y = a:byte(k), b:byte(k)
        if x ~= y then return x < y and -1 or 1 end
      end
    end
    i = j + 1
  end
  return #a < #b and -1 or 1
end

local ESCAPES = { ['"'] = '"', ['\\'] = '\\', ['/'] = '/', b = '\b', f = '\f', n = '\n', r = '\r', t = '\t' }

local function utf8_char(c)
  if c < 0x80 then return string.char(c) end
  if c < 0x800 then return string.char(0xC0 + math.floor(c / 0x40), 0x80 + c % 0x40) end
  if c < 0x10000 then
    return string.char(0xE0 + math.floor(c / 0x1000), 0x80 + math.floor(c / 0x40) % 0x40, 0x80 + c % 0x40)
  end
  return string.char(0xF0 + math.floor(c / 0x40000), 0x80 + math.floor(c / 0x1000) % 0x40,
    0x80 + math.floor(c / 0x40) % 0x40, 0x80 + c % 0x40)
end

-- The bytes (UTF-8) of a JSON string text, quotes included.
local function decode_string(t)
  local s = t:sub(2, -2)
  if not s:find('\\', 1, true) then return s end
  local out, i = {}, 1
  while true do
    local q = s:find('\\', i, true)
    if not q then
      out[#out + 1] = s:sub(i)
      return table.concat(out)
    end
    out[#out + 1] = s:sub(i, q - 1)
    local e = s:sub(q + 1, q + 1)
    if e == 'u' then
      local c = tonumber(s:sub(q + 2, q + 5), 16)
      i = q + 6
      if c >= 0xD800 and c < 0xDC00 and s:sub(i, i + 1) == '\\u' then
        local low = tonumber(s:sub(i + 2, i + 5), 16)
        if low >= 0xDC00 and low < 0xE000 then
          c = 0x10000 + (c - 0xD800) * 0x400 + (low - 0xDC00)
          i = i + 6
        end
      end
      out[#out + 1] = utf8_char(c)
    else
      out[#out + 1] = ESCAPES[e]
      i = q + 2
    end
  end
end

-- Integer texts by value, any length.
local function integer_compare(a, b)
  local na, nb = a:byte(1) == 45, b:byte(1) == 45
  if na ~= nb then return na and -1 or 1 end
  local c = magnitude_compare(na and a:sub(2) or a, nb and b:sub(2) or b)
  return na and -c or c
end

-- An integer text against a finite float, exactly (as Python compares them).
local function integer_float_compare(int_text, f)
  local whole = math.floor(f)
  local c = integer_compare(int_text, whole == 0 and '0' or string.format('%.0f', whole))
  if whole == f or c > 0 then return c end
  return -1 -- int <= floor(f) < f
end

local function number_compare(a, b)
  local ai, bi = is_integer_text(a), is_integer_text(b)
  if ai and bi then return integer_compare(a, b) end
  if ai then return integer_float_compare(a, tonumber(b)) end
  if bi then return -integer_float_compare(b, tonumber(a)) end
  local x, y = tonumber(a), tonumber(b)
  if x == y then return 0 end
  return x < y and -1 or 1
end

-- The value of member name (decoded) of an object text, read up to it.
local function member_text(t, name)
  if t == '{}' then return nil end
  local i = 2
  while true do
    local k = skip(t, i)
    local j = skip(t, k + 1)
    if decode_string(t:sub(i, k - 1)) == name then return t:sub(k + 1, j - 1) end
    if t:byte(j) ~= 44 then return nil end
    i = j + 1
  end
end

-- Element n (0-based) of an array text, read up to it.
local function element_text(t, n)
  if t == '[]' then return nil end
  local i = 2
  while true do
    local j = skip(t, i)
    if n == 0 then return t:sub(i, j - 1) end
    if t:byte(j) ~= 44 then return nil end
    n, i = n - 1, j + 1
  end
end

-- A JSON Pointer segment as an array index (RFC 6901: no leading zeros).
local function index_of(segment)
  if segment == '0' or segment:find('^[1-9]%d*$') then return tonumber(segment) end
  return nil
end

-- The value at a JSON Pointer (RFC 6901) inside t; nil when it reaches
-- nothing (a missing entry, member or element, or a path through a value
-- that is not a container). t is a text, or a container's working copy
-- (a cell, below), which answers the first step without rereading its text.
local function resolve(t, path)
  if path == '' then
    if type(t) == 'table' then return t.whole(t) end
    return t
  end
  for segment in (path:sub(2) .. '/'):gmatch('([^/]*)/') do
    if not t then return nil end
    segment = segment:gsub('~1', '/'):gsub('~0', '~')
    if type(t) == 'table' then
      t = t.child(t, segment)
    else
      local k = kind(t)
      if k == 'object' then
        t = member_text(t, segment)
      else
        local n = k == 'array' and index_of(segment)
        t = n and element_text(t, n) or nil
      end
    end
  end
  return t
end

-- While a listing evaluates one predicate over many entries, each of its
-- (sub)predicate texts is parsed once: text -> fields (nil otherwise).
local parsed_predicates

-- The fields of a predicate text: name -> value text.
local function fields(p)
  local cache = parsed_predicates
  local out = cache and cache[p]
  if out then return out end
  out = {}
  for _, m in ipairs(members(p)) do out[m[1]:sub(2, -2)] = p:sub(m[3], m[4]) end
  if cache then cache[p] = out end
  return out
end

local function ordered(a, v, holds)
  if not a then return false end
  local ka = kind(a)
  if ka ~= kind(v) then return false end
  if ka == 'number' then return holds(number_compare(a, v)) end
  if ka == 'string' then return holds(bytes_compare(decode_string(a), decode_string(v))) end
  return false
end

local function contains(a, v)
  if not a then return false end
  local ka = kind(a)
  if ka == 'array' then
    for _, e in ipairs(elements(a)) do
      if json_equal(a:sub(e[1], e[2]), v) then return true end
    end
    return false
  end
  if ka == 'string' and kind(v) == 'string' then
    return decode_string(a):find(decode_string(v), 1, true) ~= nil
  end
  return false
end

local function affix(a, v, at_end)
  if not a or kind(a) ~= 'string' or kind(v) ~= 'string' then return false end
  local s, x = decode_string(a), decode_string(v)
  if #x > #s then return false end
  if at_end then return x == '' or s:sub(-#x) == x end
  return s:sub(1, #x) == x
end

local OPERATORS = {
  eq = function(a, v) return json_equal(a or 'null', v) end,
  neq = function(a, v) return not json_equal(a or 'null', v) end,
  gt = function(a, v) return ordered(a, v, function(c) return c > 0 end) end,
  gte = function(a, v) return ordered(a, v, function(c) return c >= 0 end) end,
  lt = function(a, v) return ordered(a, v, function(c) return c < 0 end) end,
  lte = function(a, v) return ordered(a, v, function(c) return c <= 0 end) end,
  contains = contains,
  notContains = function(a, v) return not contains(a, v) end,
  startsWith = function(a, v) return affix(a, v, false) end,
  endsWith = function(a, v) return affix(a, v, true) end,
  isNull = function(a) return not a or a == 'null' end,
  isNotNull = function(a) return a ~= nil and a ~= 'null' end,
  exists = function(a) return a ~= nil end,
  missing = function(a) return a == nil end,
  type = function(a, v) return a ~= nil and '"' .. kind(a) .. '"' == v end,
}

-- Whether the normalized predicate text pred holds for an entry whose text
-- is value (present false: the entry is missing).
local function predicate_holds(pred, value, present)
  local f = fields(pred)
  if f.all then
    for _, e in ipairs(elements(f.all)) do
      if not predicate_holds(f.all:sub(e[1], e[2]), value, present) then return false end
    end
    return true
  end
  if f.any then
    for _, e in ipairs(elements(f.any)) do
      if predicate_holds(f.any:sub(e[1], e[2]), value, present) then return true end
    end
    return false
  end
  if f['not'] then return not predicate_holds(f['not'], value, present) end
  local at = present and value or nil
  return OPERATORS[decode_string(f.op)](resolve(at, decode_string(f.path)), f.value)
end

-- ---------------------------------------------------------------- operations
-- Each takes the current text (false when missing) and the op's arguments,
-- and returns new text (false: delete, nil: unchanged) and the result text.

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
      -- MAX_INT_DIGITS in values.py: the longest integer text, sign
      -- included, that can be read back.
      if #new > 4300 then
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

-- ---------------------------------------------------------------- containers
-- Containers are worked on as cells, so that a transaction of many pushes
-- or setFields on one entry costs its size once, not once per record:
--   array cell: a deque of pieces c[lo..hi], each one element text or, when
--     multi[i], a run of comma-joined elements not split yet (a pushed
--     item list, the stored array itself, brackets included while
--     c.bracketed points at it); every element is split out at most once,
--     by the pop or shift that reaches it or a path that indexes it.
--   object cell: members in insertion order; a deleted member leaves a
--     stale slot in order (pos[key] no longer points at it).
-- size is the length of the cell's JSON text, kept exact at every step so
-- that limits are checked before anything is built; text caches that JSON
-- text until the next change. Each rule takes the entry ({text, cell}) and
-- returns whether it wrote and its result (WHOLE: the new container).

local cell_text, array_child, object_child

local function array_cell(t)
  local c = { kind = 'array', lo = 1, hi = 0, multi = {}, runs = 0, size = #t, text = t,
    whole = cell_text, child = array_child }
  if t ~= '[]' then
    -- The stored text itself, brackets included, until something needs
    -- its interior: a single push or pop then copies it only once.
    c.hi = 1
    c[1] = t
    c.multi[1] = true
    c.runs = 1
    c.bracketed = 1
  end
  return c
end

local function object_cell(t)
  local c = { kind = 'object', order = {}, pos = {}, vals = {}, n = 0, size = #t, text = t,
    whole = cell_text, child = object_child }
  if t ~= '{}' then
    for i, m in ipairs(members(t)) do
      c.order[i] = m[1]
      c.pos[m[1]] = i
      c.vals[m[1]] = t:sub(m[3], m[4])
    end
    c.n = #c.order
  end
  return c
end

-- The JSON text of a cell (built once per change).
function cell_text(c)
  if c.text then return c.text end
  local t
  if c.kind == 'array' then
    local b = c.bracketed
    if b then
      c[b] = c[b]:sub(2, -2)
      c.bracketed = nil
    end
    t = c.lo > c.hi and '[]' or ('[' .. table.concat(c, ',', c.lo, c.hi) .. ']')
  else
    local parts = {}
    for i, k in ipairs(c.order) do
      if c.pos[k] == i then parts[#parts + 1] = k .. ':' .. c.vals[k] end
    end
    t = '{' .. table.concat(parts, ',') .. '}'
  end
  c.text = t
  return t
end

-- The elements of a run, split out in place (all of them, once).
local function split_runs(c)
  if c.runs == 0 then return end
  local pieces, n = {}, 0
  for i = c.lo, c.hi do
    local piece = c[i]
    if c.multi[i] then
      local run = (c.bracketed == i) and piece or ('[' .. piece .. ']')
      for _, e in ipairs(elements(run)) do
        n = n + 1
        pieces[n] = run:sub(e[1], e[2])
      end
    else
      n = n + 1
      pieces[n] = piece
    end
    c[i] = nil
  end
  c.multi, c.runs, c.bracketed, c.lo, c.hi = {}, 0, nil, 1, n
  for i = 1, n do c[i] = pieces[i] end
end

function array_child(c, segment)
  local n = index_of(segment)
  if not n then return nil end
  split_runs(c)
  if c.lo + n > c.hi then return nil end
  return c[c.lo + n]
end

function object_child(c, name)
  local by = c.by_name
  if not by then
    by = {}
    for i, raw in ipairs(c.order) do
      if c.pos[raw] == i then by[decode_string(raw)] = raw end
    end
    c.by_name = by
  end
  local raw = by[name]
  return raw and c.vals[raw]
end

local function checked_size(size)
  if size > max_bytes then
    fail('LIMIT_EXCEEDED', 'the new value would be larger than ' .. max_bytes .. ' bytes encoded')
  end
  return size
end

-- The size of a container grown by one member or run of elements.
local function grown_size(c, added)
  return checked_size(c.size + added + ((c.size > 2) and 1 or 0))
end

-- The cell an entry's container op works on; nil when the entry is
-- missing or null (the op decides what that means).
local function current_cell(entry, op, want)
  local c = entry.cell
  local t = entry.text
  if not c and (not t or t == 'null') then return nil end
  local k = c and c.kind or kind(t)
  if c and k == want then return c end
  if k ~= want then
    fail('TYPE_MISMATCH', 'cannot ' .. op .. ': stored value is ' .. ARTICLE[k] .. ', not ' .. ARTICLE[want])
  end
  c = want == 'array' and array_cell(t) or object_cell(t)
  entry.cell = c
  return c
end

-- What a container op returns when its result is the whole new container:
-- the caller learns its size before asking for its text.
local WHOLE = {}

local cell_apply = {}

local function push_generic(entry, items, at_head, op)
  local c = current_cell(entry, op, 'array')
  if items == '' then
    if not c then return false, '[]' end
    return false, WHOLE
  end
  if not c then
    c = array_cell('[]')
    entry.cell = c
  end
  c.size = grown_size(c, #items)
  if at_head then c.lo = c.lo - 1 else c.hi = c.hi + 1 end
  local i = at_head and c.lo or c.hi
  c[i] = items
  c.multi[i] = true
  c.runs = c.runs + 1
  -- A text already built is spliced (one copy) rather than rebuilt from
  -- every piece: a run of pushes returning their arrays stays cheap.
  local t = c.text
  if t == '[]' then
    c.text = '[' .. items .. ']'
  elseif t then
    c.text = at_head and ('[' .. items .. ',' .. t:sub(2)) or (t:sub(1, -2) .. ',' .. items .. ']')
  end
  return true, WHOLE
end

function cell_apply.push(entry, items) return push_generic(entry, items, false, 'push') end
function cell_apply.unshift(entry, items) return push_generic(entry, items, true, 'unshift') end

local function pop_generic(entry, from_head, op)
  local c = current_cell(entry, op, 'array')
  if not c or c.lo > c.hi then return false, 'null' end
  if entry.once then
    -- A single operation: splice the text, since no later record will pop
    -- again (splitting every element out would cost more).
    local t = cell_text(c)
    local e = elements(t)
    local first, last = e[1], e[#e]
    local value = from_head and t:sub(first[1], first[2]) or t:sub(last[1], last[2])
    local rest = (#e == 1) and '[]' or (from_head and ('[' .. t:sub(e[2][1])) or (t:sub(1, e[#e - 1][2]) .. ']'))
    entry.cell = array_cell(rest)
    return true, value
  end
  local i = from_head and c.lo or c.hi
  if c.multi[i] then
    -- Split the run at this end into its elements, once.
    local run = c[i]
    if c.bracketed == i then c.bracketed = nil else run = '[' .. run .. ']' end
    local e = elements(run)
    c.multi[i] = nil
    c.runs = c.runs - 1
    if from_head then
      c.lo = c.lo + 1
      for n = #e, 1, -1 do
        c.lo = c.lo - 1
        c[c.lo] = run:sub(e[n][1], e[n][2])
      end
    else
      c.hi = c.hi - 1
      for n = 1, #e do
        c.hi = c.hi + 1
        c[c.hi] = run:sub(e[n][1], e[n][2])
      end
    end
    i = from_head and c.lo or c.hi
  end
  local value = c[i]
  c[i] = nil
  if from_head then c.lo = c.lo + 1 else c.hi = c.hi - 1 end
  c.size = (c.lo > c.hi) and 2 or (c.size - #value - 1)
  c.text = nil
  return true, value
end

function cell_apply.pop(entry) return pop_generic(entry, false, 'pop') end
function cell_apply.shift(entry) return pop_generic(entry, true, 'shift') end

function cell_apply.setField(entry, field, value)
  local c = current_cell(entry, 'setField', 'object')
  if not c then
    c = object_cell('{}')
    entry.cell = c
  end
  local old = c.vals[field]
  if old then
    c.size = checked_size(c.size - #old + #value)
    c.text = nil
  else
    c.size = grown_size(c, #field + 1 + #value)
    c.order[#c.order + 1] = field
    c.pos[field] = #c.order
    c.n = c.n + 1
    if c.by_name then c.by_name[decode_string(field)] = field end
    local t = c.text -- spliced, as push does
    if t == '{}' then
      c.text = '{' .. field .. ':' .. value .. '}'
    elseif t then
      c.text = t:sub(1, -2) .. ',' .. field .. ':' .. value .. '}'
    end
  end
  c.vals[field] = value
  return true, WHOLE
end

function cell_apply.deleteField(entry, field)
  local c = current_cell(entry, 'deleteField', 'object')
  if not c then return false, '{}' end
  local old = c.vals[field]
  if not old then return false, WHOLE end
  c.size = (c.n == 1) and 2 or (c.size - #field - 1 - #old - 1)
  c.vals[field], c.pos[field] = nil, nil
  c.n = c.n - 1
  c.text = nil
  return true, WHOLE
end

-- The same rules on texts, for a single operation: returns the new text
-- (nil when unchanged) and the result text, as the scalar rules do.
-- (Spelled out: a function library may call no library function while it loads.)
local function on_text(rule)
  return function(cur, a1, a2)
    local entry = { text = cur, once = true }
    local changed, result = rule(entry, a1, a2)
    if result == WHOLE then result = cell_text(entry.cell) end
    if not changed then return nil, result end
    return cell_text(entry.cell), result
  end
end
apply.push = on_text(cell_apply.push)
apply.unshift = on_text(cell_apply.unshift)
apply.pop = on_text(cell_apply.pop)
apply.shift = on_text(cell_apply.shift)
apply.setField = on_text(cell_apply.setField)
apply.deleteField = on_text(cell_apply.deleteField)

-- A guard: changes nothing; its result says whether the predicate holds.
-- A stored container gets its working copy, so that many checks on one
-- entry read its text once.
function cell_apply.check(entry, pred)
  local value = entry.cell
  if not value then
    value = entry.text
    local k = value and kind(value)
    if k == 'array' or k == 'object' then
      value = current_cell(entry, 'check', k)
    end
  end
  return false, predicate_holds(pred, value or nil, value and true or false) and 'true' or 'false'
end
apply.check = on_text(cell_apply.check)

-- --------------------------------------------------------- storage, feed

-- Set at the start of each writing call (run, below): the group's keys,
-- its name, and the feed's settings and the writer's stamp.
local H, S, Z, group
local feed_max, feed_bytes, feed_stamp_tail
-- This call's feed records (see record): how many, the first one, and,
-- from the second on, all of them flat after two slots for the stamp and
-- the group.
local feed_n, feed_key, feed_op, feed_old, feed_new, feed_recs
-- What this call did to the group's hash, for its index.
local created, removed

-- Sorting by bytes, which for UTF-8 is code-point order (Lua's own < follows the locale).
local function bytes_less(a, b) return bytes_compare(a, b) < 0 end

-- One entry written (new) or removed (false).
local function store(key, new)
  if new then
    if redis.call('HSET', H, key, new) == 1 then created = created + 1 end
  else
    redis.call('HDEL', H, key)
    removed = true
  end
end

-- The group index holds exactly the groups with entries: a group enters
-- with its first entry and leaves with its last, in the call that does it.
-- (A group dropped by its TTL stays listed until a reader prunes it.)
local function reindex()
  if created > 0 and redis.call('HLEN', H) == created then
    redis.call('ZADD', Z, 0, group)
  elseif removed and redis.call('EXISTS', H) == 0 then
    redis.call('ZREM', Z, group)
  end
end

-- Below this many entries byte trimming is exact: approximate trimming
-- drops whole stream nodes (up to 100 entries) and would keep far more than asked.
local EXACT_BELOW = 1000

local function trim_kind(n)
  return n < EXACT_BELOW and '=' or '~'
end

-- One feed record for one entry written: old and new are texts ('' for
-- missing). Records are kept until the end of the call (flush), which
-- writes them all in one stream entry: one XADD per call, not per record.
-- A call of one record (most) builds no table.
local function record(key, op, old, new)
  if feed_max == 0 then return end
  local n = feed_n
  if n == 0 then
    feed_key, feed_op, feed_old, feed_new = key, op, old, new
  else
    local t = feed_recs
    if n == 1 then
      t = { '', group, feed_key, feed_op, feed_old, feed_new }
      feed_recs = t
    end
    local m = 2 + 4 * n
    t[m + 1], t[m + 2], t[m + 3], t[m + 4] = key, op, old, new
  end
  feed_n = n + 1
end

-- One stream entry holding count records: text is the stamp, the group,
-- then key, op, old and new of each record, joined by NUL bytes (no part
-- holds one: names refuse NUL and JSON text escapes it). Records are
-- numbered one by one, without gaps, across entries: the entry's ID is
-- "0-<n>", n the number of its first record, and its one field is named by
-- its record count. XADD "0-*" numbers it one after the stream's last ID,
-- which XSETID then moves to its last record's number, so that the next
-- entry starts right after it. Returns that number.
local function append(text, count)
  local id = redis.call('XADD', S, '0-*', count == 1 and '1' or tostring(count), text)
  local last = tonumber(id:sub(3)) + count - 1
  if count > 1 then redis.call('XSETID', S, string.format('0-%d', last)) end
  return last
end

-- Writes this call's records (see record) and trims the feed.
--
-- Retention counts records: at least the newest feed_max are kept, and
-- fewer than twice as many. Trimming is checked when a call's records
-- pass a multiple of step (1024, or a quarter of the limit below 4096
-- records) and removes the entries wholly older than the newest feed_max
-- records (XTRIM MINID; the entry holding the oldest record kept stays
-- whole). An entry holds at most half the limit, so the stream holds at
-- most the limit, plus under half of it in that entry, plus under a
-- quarter of it since the last check. An entry also holds at most half the
-- byte limit of text (or one record), for the same reason.
--
-- The byte limit: the stream's memory (MEMORY USAGE, sampled) is measured
-- when a call's records pass a multiple of 64, and after any entry large
-- enough that 64 of them could pass it, so it is never passed by more
-- than the limit again.
local function flush()
  local count = feed_n
  -- One format call: %d truncates the microseconds' thousandths (Lua 5.1).
  local now = redis.call('TIME')
  local stamp = string.format('%s%03d %s', now[1], now[2] / 1000, feed_stamp_tail)
  local cap = feed_max < 4 and 1 or math.floor(feed_max / 2)
  local half = feed_bytes > 0 and math.floor(feed_bytes / 2) or math.huge
  local last, size
  if count == 1 then
    local text = stamp .. '\0' .. group .. '\0' .. feed_key .. '\0' .. feed_op .. '\0' .. feed_old .. '\0' .. feed_new
    last, size = append(text, 1), #text
  else
    local t = feed_recs
    feed_recs = nil
    local text
    if count <= cap then
      t[1] = stamp
      text = table.concat(t, '\0')
    end
    if text and #text <= half then
      last, size = append(text, count), #text
    else
      -- Entries of at most cap records and half the byte limit (one record
      -- at least): trimming drops whole entries, so one entry of a huge
      -- call would keep far more than either limit.
      local head = stamp .. '\0' .. group .. '\0'
      size = 0
      local from = 0
      while from < count do
        local at = 3 + 4 * from
        local m, bytes = 1, #head + #t[at] + #t[at + 1] + #t[at + 2] + #t[at + 3] + 3
        while from + m < count and m < cap do
          at = at + 4
          local more = #t[at] + #t[at + 1] + #t[at + 2] + #t[at + 3] + 4
          if bytes + more > half then break end
          m, bytes = m + 1, bytes + more
        end
        text = head .. table.concat(t, '\0', 3 + 4 * from, 2 + 4 * (from + m))
        last = append(text, m)
        if #text > size then size = #text end
        from = from + m
      end
    end
  end
  local step = feed_max < 4096 and math.max(1, math.floor(feed_max / 4)) or 1024
  if last > feed_max and math.floor(last / step) ~= math.floor((last - count) / step) then
    local oldest = last - feed_max + 1
    -- Only when the stream starts before the oldest record to keep (the
    -- byte limit may have trimmed past it): a search back from an ID
    -- below the whole stream would walk all of it.
    local head = redis.call('XRANGE', S, '-', '+', 'COUNT', 1)[1]
    if head and tonumber(head[1]:sub(3)) < oldest then
      -- The entry holding the oldest record to keep: the last one starting at or before it.
      local keep = redis.call('XREVRANGE', S, string.format('0-%d', oldest), '-', 'COUNT', 1)[1]
      if keep[1] ~= head[1] then redis.call('XTRIM', S, 'MINID', keep[1]) end
    end
  end
  if feed_bytes > 0 and (math.floor(last / 64) ~= math.floor((last - count) / 64) or (size + 32) * 64 >= feed_bytes) then
    local used = redis.call('MEMORY', 'USAGE', S)
    if used and used > feed_bytes then
      local entries = math.max(1, math.floor(redis.call('XLEN', S) * feed_bytes / used))
      redis.call('XTRIM', S, 'MAXLEN', trim_kind(entries), entries)
    end
  end
end

-- -------------------------------------------------------------------- modes

local function failure_text(failure)
  return '!' .. failure.code .. ' ' .. failure.message
end

-- One op on its stored entry, written back if it changed anything: the
-- step of both 'one' and 'batch'. Returns the Failure (or nil), the result,
-- and, when it wrote, the old and new texts ('' for missing).
local function apply_stored(op, key, a1, a2)
  local cur = redis.call('HGET', H, key)
  local ok, new, result = pcall(apply[op], cur, a1, a2)
  if not ok then
    if getmetatable(new) ~= Failure then error(new) end
    return new
  end
  if new == nil or (new == false and not cur) then return nil, result end
  store(key, new)
  record(key, op, cur or '', new or '')
  return nil, result, cur or '', new or ''
end

-- How a transaction names its failed operation (describe_op in ops.py).
local function transaction_failed(i, op, key, code, message)
  return { 'ERR', i - 1, code, 'operation ' .. (i - 1) .. ' (' .. op .. ' ' .. string.format('%q', key) .. '): ' .. message }
end

-- Records that never write: a batch needs no old text for their events.
local READS = { get = true, exists = true, check = true }

-- The guards that fail a transaction when their result is false.
local GUARD_MISMATCH = { compareAndSwap = 'expected value did not match', check = 'the check did not hold' }

-- Where the operations start in ARGV (after the header, the group and the stamp).
local OPS = 4

-- How the error of a batch that stopped before writing anything begins
-- (combine.py knows it by this text).
local STOPPED_UNWRITTEN = 'motia-state: batch stopped before writing: '

local mode_run = {}

function mode_run.one(ARGV, ttl, want_changes)
  local op, key = ARGV[OPS], ARGV[OPS + 1]
  local failure, result, old, new = apply_stored(op, key, ARGV[OPS + 2] or '', ARGV[OPS + 3] or '')
  if failure then
    if want_changes then return { 'ERR', 0, failure.code, failure.message } end
    return failure_text(failure)
  end
  if old then
    reindex()
    if ttl > 0 then redis.call('PEXPIRE', H, ttl) end
  end
  if not want_changes then return '=' .. result end
  if not old then return { 'OK', 1, result } end
  return { 'OK', 1, result, key, op, old, new }
end

local function entry_text(e)
  if e.cell then return cell_text(e.cell) end
  return e.text
end

-- Transactions and batches: the records run in order on working copies of
-- their entries, each loaded once; nothing is written until every record
-- has run and the results are known to fit in max_result bytes. Returns
-- the reply, or {'TOO_LARGE', bytes} with nothing written.
local function run_staged(ARGV, ttl, want_changes, all_or_nothing, max_result)
  local entries, order, results, events = {}, {}, {}, {}
  -- The results' encoded size as a JSON array of the values (a failed
  -- batch record has none): brackets, and a comma before each but the first.
  local result_bytes = 1
  -- A batch's records are one per record that wrote, as its events;
  -- events holds them only when changes are wanted (the reply lists them).
  local per_record = not all_or_nothing and (want_changes or feed_max > 0)
  -- Whether a batch record wrote: each is a write of its own and refreshes
  -- the TTL, even when the batch ends where it started (set, then delete).
  local touched = false
  for i = 1, (#ARGV - OPS + 1) / 4 do
    local base = OPS + (i - 1) * 4
    local op, key, a1, a2 = ARGV[base], ARGV[base + 1], ARGV[base + 2], ARGV[base + 3]
    local e = entries[key]
    if not e then
      local t = redis.call('HGET', H, key)
      e = { text = t, original = t }
      entries[key] = e
    end
    local before = per_record and not READS[op] and entry_text(e)
    -- wrote: whether the record changed the entry (or the Failure it raised).
    local rule = cell_apply[op]
    local ok, wrote, result
    if rule then
      ok, wrote, result = pcall(rule, e, a1, a2)
    else
      local new
      ok, new, result = pcall(apply[op], entry_text(e), a1, a2)
      wrote = new
      -- nil: unchanged; false: delete, which writes nothing when there is nothing.
      if ok then
        wrote = new ~= nil and (new or entry_text(e)) and true or false
        if wrote then e.text, e.cell = new, nil end
      end
    end
    if not ok then
      if getmetatable(wrote) ~= Failure then
        -- Not a rule's failure (a stored text that is not JSON): nothing is
        -- written yet, which the message says, so that a client that
        -- combined single operations into this batch may run each alone.
        if not all_or_nothing then error(STOPPED_UNWRITTEN .. tostring(wrote), 0) end
        error(wrote)
      end
      if all_or_nothing then return transaction_failed(i, op, key, wrote.code, wrote.message) end
      result = failure_text(wrote)
    else
      if result == 'false' and GUARD_MISMATCH[op] and all_or_nothing then
        return transaction_failed(i, op, key, 'CONFLICT', GUARD_MISMATCH[op])
      end
      if wrote then
        touched = true
        if not e.op then order[#order + 1] = key end -- events in the order of first writes
        e.op = op
        if per_record then
          local after = entry_text(e) or ''
          record(key, op, before or '', after)
          if want_changes then events[#events + 1] = { key, op, before or '', after } end
        end
      end
      -- The size is known before a whole container's text is built.
      result_bytes = result_bytes + 1 + (result == WHOLE and e.cell.size or #result)
      if result_bytes > max_result then
        feed_n = 0 -- nothing is written: neither are its records
        return { 'TOO_LARGE', result_bytes }
      end
      if result == WHOLE then result = cell_text(e.cell) end
      if not all_or_nothing then result = '=' .. result end
    end
    results[i] = result
  end
  -- Everything checked: now write.
  local reply = { 'OK', #results }
  for _, r in ipairs(results) do reply[#reply + 1] = r end
  local wrote = false
  for _, key in ipairs(order) do
    local e = entries[key]
    if e.op then
      local new = entry_text(e)
      -- Created and removed again inside one call: nothing happened.
      if new or e.original then
        store(key, new or false)
        wrote = true
        if all_or_nothing then
          record(key, e.op, e.original or '', new or '')
          if want_changes then events[#events + 1] = { key, e.op, e.original or '', new or '' } end
        end
      end
    end
  end
  if wrote then reindex() end
  if ttl > 0 and (wrote or (touched and not all_or_nothing)) then redis.call('PEXPIRE', H, ttl) end
  for _, change in ipairs(events) do
    for _, v in ipairs(change) do reply[#reply + 1] = v end
  end
  return reply
end

function mode_run.tx(ARGV, ttl, want_changes, max_result)
  return run_staged(ARGV, ttl, want_changes, true, max_result)
end

-- Each record on its own: one that fails stores nothing and the others
-- still run; a compareAndSwap or check that does not hold is the value false.
function mode_run.batch(ARGV, ttl, want_changes, max_result)
  return run_staged(ARGV, ttl, want_changes, false, max_result)
end

-- ARGV[OPS]: the number n of (key, expected, new) triples that follow;
-- after them, the feed records the client computed, (key, op, old, new).
function mode_run.commit(ARGV, ttl)
  local last = OPS + 3 * tonumber(ARGV[OPS])
  for i = OPS + 1, last, 3 do
    if (redis.call('HGET', H, ARGV[i]) or '') ~= ARGV[i + 1] then return 0 end
  end
  local wrote = false
  for i = OPS + 1, last, 3 do
    local new = ARGV[i + 2]
    if new == '' then
      store(ARGV[i], false)
      wrote = true
    elseif new ~= '=' then
      store(ARGV[i], new)
      wrote = true
    end
  end
  if wrote then
    reindex()
    if ttl > 0 then redis.call('PEXPIRE', H, ttl) end
  end
  for i = last + 1, #ARGV, 4 do
    record(ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3])
  end
  return 1
end

-- Removes the group; its records (one "deleted" per entry) in key order.
-- Reply: its entries, field and value alternating (none when neither
-- changes nor records are wanted).
function mode_run.clear(ARGV, ttl, want_changes)
  if not want_changes and feed_max == 0 then
    redis.call('DEL', H)
    redis.call('ZREM', Z, group)
    return {}
  end
  local all = redis.call('HGETALL', H)
  if #all == 0 then
    redis.call('ZREM', Z, group) -- a group dropped by its TTL
    return all
  end
  redis.call('DEL', H)
  redis.call('ZREM', Z, group)
  if feed_max > 0 then
    local names, values = {}, {}
    for i = 1, #all, 2 do
      names[#names + 1] = all[i]
      values[all[i]] = all[i + 1]
    end
    table.sort(names, bytes_less) -- code-point order, as the client's
    for _, key in ipairs(names) do record(key, 'clear', values[key], '') end
  end
  return all
end

-- ----------------------------------------------------------- reading modes
-- These write nothing to the state: they read a shard's feed or index, or
-- a group's hash, where one call is needed to see it at one instant.

local mode_read = {}

-- How many records a stream entry holds: its one field is named by the
-- count; an entry of fields g, k, o, a, b, x (one field per part of the
-- record) holds one.
local function entry_count(fields)
  return tonumber(fields[1]) or 1
end

-- The number of the last record a stream without entries numbered (0 when
-- there is no stream): emptied by hand, it still numbers the next entry
-- after its last ID, so readers must start there, not at 0.
local function last_generated(S)
  if redis.call('EXISTS', S) == 0 then return '0' end
  local info = redis.call('XINFO', 'STREAM', S)
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then return info[i + 1]:sub(3) end
  end
  return '0'
end

-- KEYS[1] a feed stream; ARGV[2] (optional) a record number p. Reply:
-- {first n, last n, records retained} (first "0" when empty), then, when p
-- falls inside an entry that holds records after it, that entry (id,
-- fields), so that a reader starting after p reads the rest of it.
function mode_read.info(KEYS, ARGV)
  local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)[1]
  if not first then return { '0', last_generated(KEYS[1]), 0 } end
  local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)[1]
  local low = tonumber(first[1]:sub(3))
  local high = tonumber(last[1]:sub(3)) + entry_count(last[2]) - 1
  local reply = { first[1]:sub(3), string.format('%d', high), high - low + 1 }
  local p = tonumber(ARGV[2] or '')
  if p and p >= low and p < high then
    local around = redis.call('XREVRANGE', KEYS[1], string.format('0-%d', p), '-', 'COUNT', 1)[1]
    if around and tonumber(around[1]:sub(3)) + entry_count(around[2]) - 1 > p then
      reply[4], reply[5] = around[1], around[2]
    end
  end
  return reply
end

-- The parts of an entry's text (see append), in order.
local function split_nul(s)
  local parts, pos = {}, 1
  while true do
    local at = s:find('\0', pos, true)
    if not at then
      parts[#parts + 1] = s:sub(pos)
      return parts
    end
    parts[#parts + 1] = s:sub(pos, at - 1)
    pos = at + 1
  end
end

-- KEYS[1] a feed stream; ARGV[2] group, ARGV[3] key, ARGV[4] the most
-- records wanted, ARGV[5] where to look from (exclusive: "(0-n") or "+",
-- ARGV[6] the most records to examine in this call (so that a long search
-- never holds Redis for long). Reply: {where to continue ("" at the
-- start of the stream), then the records found, newest first, five
-- elements each: record number, stamp, op, old, new}.
function mode_read.history(KEYS, ARGV)
  local g, k, want, budget = ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[6])
  local from = ARGV[5]
  local found, reply = 0, { '' }
  if from ~= '+' then
    -- Trimmed past where the last call stopped: nothing older is left (and
    -- a search back from an ID below the whole stream would walk all of it).
    local head = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)[1]
    if not head or tonumber(head[1]:sub(3)) >= tonumber(from:sub(4)) then return reply end
  end
  while true do
    local entries = redis.call('XREVRANGE', KEYS[1], from, '-', 'COUNT', math.max(1, math.min(budget, 64)))
    for _, entry in ipairs(entries) do
      local id, f = entry[1], entry[2]
      if f[1] == 'g' then
        if f[2] == g and f[4] == k then
          local n = #reply
          reply[n + 1], reply[n + 2], reply[n + 3], reply[n + 4], reply[n + 5] = id:sub(3), f[12], f[6], f[8], f[10]
          found = found + 1
          if found >= want then return reply end
        end
        budget = budget - 1
      else
        local text, count = f[2], tonumber(f[1])
        -- The group is the second part: most entries of other groups are passed over unsplit.
        local g_at = text:find('\0', 1, true)
        if g_at and text:sub(g_at + 1, g_at + #g) == g and text:byte(g_at + #g + 1) == 0 then
          local t = split_nul(text)
          local base = tonumber(id:sub(3)) - 1
          for j = count, 1, -1 do
            local at = 4 * j - 2
            if t[at + 1] == k then
              local n = #reply
              reply[n + 1], reply[n + 2], reply[n + 3], reply[n + 4], reply[n + 5] =
                string.format('%d', base + j), t[1], t[at + 2], t[at + 3], t[at + 4]
              found = found + 1
              if found >= want then return reply end
            end
          end
        end
        budget = budget - count
      end
      from = '(' .. id
      if budget <= 0 then
        reply[1] = from
        return reply
      end
    end
    if #entries == 0 then return reply end
  end
end

-- The key of a group's hash: percent-escaped as the client does it.
local function hash_key(prefix, name)
  if not name:find('[%%{}]') then return prefix .. name end
  return prefix .. name:gsub('%%', '%%25'):gsub('{', '%%7B'):gsub('}', '%%7D')
end

-- KEYS[1] a shard's group index; ARGV[2] its hashes' key prefix. Reply:
-- the groups that hold entries; those dropped by their TTL leave the index.
function mode_read.groups(KEYS, ARGV)
  local live = {}
  for _, name in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
    if redis.call('EXISTS', hash_key(ARGV[2], name)) == 1 then
      live[#live + 1] = name
    else
      redis.call('ZREM', KEYS[1], name)
    end
  end
  return live
end

-- A number that orders texts as their bytes from at + 1 to at + 6 do (an
-- end of text first): exact in a double, and far cheaper to compare than
-- the texts, so that ordering a huge group costs few calls of bytes_compare.
local function rank(s, at)
  local a, b, c, d, e, f = s:byte(at + 1, at + 6)
  return (((((a or -1) + 1) * 257 + (b or -1) + 1) * 257 + (c or -1) + 1) * 257
    + (d or -1) + 1) * 66049 + ((e or -1) + 1) * 257 + (f or -1) + 1
end

-- The first k of the names that come after `after` ("" = none), in byte
-- order. A group's keys often share a long prefix ("user:000..."): ranks
-- are taken after the prefix they all share, so that they differ. Then a
-- partial quickselect on the ranks, so that a huge group costs about its
-- key count in steps, not a sort of all its keys.
local function first_after(all, after, k)
  local count = #all
  if count == 0 then return all, 0 end
  if count == 1 then -- a group of one key, common enough to skip the machinery
    if after == '' or bytes_compare(all[1], after) > 0 then return all, 1 end
    return {}, 0
  end
  local prefix = all[1]
  local at = #prefix
  for i = 2, count do
    local name = all[i]
    while at > 0 and name:sub(1, at) ~= prefix do
      at = at - 1
      prefix = prefix:sub(1, at)
    end
  end
  local floor = -1
  if after ~= '' then
    local c = bytes_compare(after:sub(1, at), prefix)
    if c > 0 then return {}, 0 end -- every name starts with prefix, before after
    if c == 0 then floor = rank(after, at) end
  end
  local names, ranks = {}, {}
  for i = 1, count do
    local name = all[i]
    local r = rank(name, at)
    if r > floor or (r == floor and bytes_compare(name, after) > 0) then
      names[#names + 1], ranks[#ranks + 1] = name, r
    end
  end
  local n = #names
  if k < n then
    local lo, hi = 1, n
    while lo < hi do
      local m = math.floor((lo + hi) / 2)
      local pivot, pr = names[m], ranks[m]
      -- Three-way partition of lo..hi: before the pivot, the pivot, after it (names are distinct).
      local lt, i, gt = lo, lo, hi
      while i <= gt do
        local r, c = ranks[i], 0
        if r ~= pr then c = r < pr and -1 or 1 else c = bytes_compare(names[i], pivot) end
        if c < 0 then
          names[lt], names[i], ranks[lt], ranks[i] = names[i], names[lt], ranks[i], ranks[lt]
          lt, i = lt + 1, i + 1
        elseif c > 0 then
          names[gt], names[i], ranks[gt], ranks[i] = names[i], names[gt], ranks[i], ranks[gt]
          gt = gt - 1
        else
          i = i + 1
        end
      end
      if k < lt then hi = lt - 1 elseif k <= gt then break else lo = gt + 1 end
    end
  end
  local total = n
  if k < n then n = k end
  local first, rank_of = {}, {}
  for i = 1, n do
    first[i] = names[i]
    rank_of[names[i]] = ranks[i]
  end
  table.sort(first, function(a, b)
    local x, y = rank_of[a], rank_of[b]
    if x ~= y then return x < y end
    return bytes_compare(a, b) < 0
  end)
  return first, total
end

-- Values read per HMGET while listing: a call that stops early has not
-- fetched much that it did not examine.
local PAGE_CHUNK = 256

-- A listing step: groups are read in order, each group's keys in order,
-- and only the entries that hold the predicate are given, so that the
-- others never leave the server. The step stops once want entries are
-- given, or once budget entries or bytes bytes of values were examined,
-- so that one call never holds the server long (the first group reached
-- always examines at least one entry). L is the step's state: the limits,
-- the predicate text (nil: every entry), the counts so far, and the
-- reply being built (L.reply, whose first elements the modes fill last).
local function list_group(L, hash, after)
  local names, total = redis.call('HKEYS', hash), 0
  -- Without a filter every examined entry is given: no more are needed than wanted.
  local wanted = L.pred and L.budget - L.examined or math.min(L.want - L.given, L.budget - L.examined)
  names, total = first_after(names, after, wanted)
  local reply, found, i, n, last = L.reply, {}, 0, 0, nil
  while i < #names and L.given < L.want and L.examined < L.budget and L.read < L.bytes do
    local chunk = {}
    for j = i + 1, math.min(i + PAGE_CHUNK, #names) do chunk[#chunk + 1] = names[j] end
    local values = redis.call('HMGET', hash, unpack(chunk))
    for j, name in ipairs(chunk) do
      local text = values[j] or 'null'
      i, last = i + 1, name
      L.examined, L.read = L.examined + 1, L.read + #text
      if not L.pred or predicate_holds(L.pred, text, true) then
        found[2 * n + 1], found[2 * n + 2] = name, text
        n = n + 1
        L.given = L.given + 1
      end
      if L.given >= L.want or L.examined >= L.budget or L.read >= L.bytes then break end
    end
  end
  local apart = last ~= nil and last ~= found[2 * n - 1]
  if apart then reply[#reply + 1] = last end
  for j = 1, 2 * n do reply[#reply + 1] = found[j] end
  return i < total, (i < total and '1 ' or '0 ') .. i .. ' ' .. n .. (apart and ' 1' or ' 0')
end

local function list_state(ARGV, first)
  local want, budget, bytes = string.match(ARGV[2], '^(%d+) (%d+) (%d+)$')
  local pred = ARGV[3] ~= '' and ARGV[3] or nil
  parsed_predicates = {}
  local reply = {}
  for i = 1, first do reply[i] = '' end
  return {
    want = tonumber(want), budget = tonumber(budget), bytes = tonumber(bytes), pred = pred,
    given = 0, examined = 0, read = 0, reply = reply,
  }
end

local function list_full(L)
  return L.given >= L.want or L.examined >= L.budget or L.read >= L.bytes
end

-- The modes' common arguments:
-- ARGV[2] "<want> <budget> <bytes>", the step's limits (above);
-- ARGV[3] the normalized predicate's JSON text that an entry must hold to
--         be given ("" = every entry).
-- Per group reached, in order, four numbers: more (1 if keys after the
-- last examined one remain, else 0), how many entries were examined, the
-- number n given, and 1 when the last key examined is not the last key
-- given (else 0). All the numbers of a reply are one string (each element
-- of a reply costs the client time to parse); then, group by group, that
-- last key when it is apart, and the n keys and values given, alternating,
-- in key order. The groups after the one where a step stopped are left out.

-- KEYS: the group hashes (of one shard), in the order to read them;
-- ARGV[3 + i] the key of KEYS[i] to start after ("" = from its first).
-- Reply: the numbers, then each group's keys and values.
function mode_read.page(KEYS, ARGV)
  local L, heads = list_state(ARGV, 1), {}
  for g, hash in ipairs(KEYS) do
    if list_full(L) then break end
    local _, head = list_group(L, hash, ARGV[3 + g])
    heads[#heads + 1] = head
  end
  parsed_predicates = nil
  L.reply[1] = table.concat(heads, ' ')
  return L.reply
end

-- The groups themselves come from the shard's group index, in order: so a
-- store on one shard lists a page in one call, however small its groups.
-- KEYS[1] the shard's group index; ARGV[4] its hashes' key prefix; ARGV[5]
-- the group to start at ("" = the first); ARGV[6] the key of that group to
-- start after; ARGV[7] a prefix of groups to leave out ("" = none).
-- Reply: the numbers, led by 1 when the step read to the end of the index
-- (else 0) and with each group's name length after its four; then the
-- names of the groups reached, one after the other in one string; then
-- each group's keys and values.
function mode_read.walk(KEYS, ARGV)
  local L, heads, names = list_state(ARGV, 2), {}, {}
  local prefix, start, start_key, hidden = ARGV[4], ARGV[5], ARGV[6], ARGV[7]
  local low, stopped, visited = start == '' and '-' or '[' .. start, false, 0
  while not stopped do
    local batch = redis.call('ZRANGEBYLEX', KEYS[1], low, '+', 'LIMIT', 0, 128)
    if #batch == 0 then break end
    for _, name in ipairs(batch) do
      -- Empty groups (dropped by their TTL) cost a visit each: they count too.
      if list_full(L) or visited >= L.budget then
        stopped = true
        break
      end
      if hidden == '' or name:sub(1, #hidden) ~= hidden then
        visited = visited + 1
        local more, head = list_group(L, hash_key(prefix, name), name == start and start_key or '')
        heads[#heads + 1] = head .. ' ' .. #name
        names[#names + 1] = name
        if more then
          stopped = true
          break
        end
      end
      low = '(' .. name
    end
  end
  parsed_predicates = nil
  L.reply[1] = (stopped and '0 ' or '1 ') .. table.concat(heads, ' ')
  L.reply[2] = table.concat(names)
  return L.reply
end

-- The last writing header parsed and what it said. A client sends the same
-- header with each call of a kind, and Lua interns its strings, so telling
-- it from the last one is one pointer comparison, cheaper than parsing.
local last_head, last_mode, last_changes, last_ttl, last_max, last_result, last_fmax, last_fbytes

local function run(KEYS, ARGV)
  local head = ARGV[1]
  parsed_predicates = nil -- a listing that failed part way leaves nothing behind
  if head ~= last_head then
    local mode, rest = string.match(head, '^(%a+) ?(.*)$')
    local read = mode_read[mode]
    if read then return read(KEYS, ARGV) end
    local changes, ttl, max_text, max_result, fmax, fbytes = string.match(rest, '^(%d) (%d+) (%d+) (%d+) (%d+) (%d+)$')
    if not (changes and mode_run[mode]) then error('motia-state: malformed call header: ' .. head) end
    last_head, last_mode, last_changes, last_ttl, last_max, last_result, last_fmax, last_fbytes =
      head, mode, changes == '1', tonumber(ttl), tonumber(max_text), tonumber(max_result), tonumber(fmax), tonumber(fbytes)
  end
  max_bytes = last_max
  H, S, Z, group = KEYS[1], KEYS[2], KEYS[3], ARGV[2]
  feed_max, feed_bytes, feed_stamp_tail, feed_n = last_fmax, last_fbytes, ARGV[3], 0
  created, removed = 0, false
  local reply = mode_run[last_mode](ARGV, last_ttl, last_changes, last_result)
  if feed_n > 0 then flush() end
  return reply
end

-- As a script (EVALSHA) this file ends by running; as a function library
-- (FUNCTION LOAD, Redis >= 7) the loader replaces this last line.
return run(KEYS, ARGV)
