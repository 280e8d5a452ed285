'use strict'
// NDJSON RPC over a pair of byte streams: requests both ways, pipelining,
// replies matched by id. Lines are split on raw bytes before decoding, so a
// multibyte character split across two reads never breaks a frame.

const fs = require('fs')
const os = require('os')
const { errorForCode, StateError, InvalidArgumentError, LimitExceededError } = require('./errors')

/** The frame limit when the parent names none (MOTIA_STEP_MAX_FRAME_BYTES). */
const DEFAULT_MAX_FRAME = 16 * 1024 * 1024
/** How deep a value may nest (containers inside containers); the parent's limit. */
const MAX_DEPTH = 256
/**
 * Levels that a handler's result, an emit's data or `ctx.call` args may add
 * around values (a list of records holding stored values, say).
 */
const WRAP_DEPTH = 64
const NEWLINE = 0x0a
const FLUSH_EVERY = 256
/** Skipped spins after one that found nothing, at most (the backoff's cap). */
const MAX_SKIP = 256
/** Bytes kept of an oversized incoming frame, to read its type and id. */
const HEAD_BYTES = 512
const TYPE_RE = /"type"\s*:\s*"(rpc_request|rpc_response)"/
// An id is a string or an integer; "1.5" or "1e3" must not be read as 1.
const ID_RE = /"id"\s*:\s*("(?:[^"\\]|\\.){0,256}"|-?\d{1,20})\s*[,}]/
/** How every reply of the parent begins, up to its id. */
const REPLY_HEAD = '{"type":"rpc_response","id":'
const RESULT_KEY = ',"result":'
const NOT_READ = Symbol('not read')
/** Whether bytes are well-formed UTF-8 (Buffer's own check where Node has it). */
const FATAL_UTF8 = new TextDecoder('utf-8', { fatal: true })
const isUtf8 = require('buffer').isUtf8 || ((bytes) => {
  try {
    FATAL_UTF8.decode(bytes)
    return true
  } catch (e) {
    return false
  }
})
/** Characters of a value of the parent's that a report shows, at most. */
const SHOWN = 100
/** Digits that `digitsAt` read last (a module variable: no object per reply). */
let DIGITS = 0

/**
 * The integer written in `text` from `start` up to the first character that
 * is not a digit (before `end`), as JSON writes it: no leading zero, at most
 * 15 digits (so exact). -1 when there is none such; DIGITS says how many.
 */
function digitsAt (text, start, end) {
  let value = 0
  let i = start
  for (; i < end && i - start <= 15; i++) {
    const c = text.charCodeAt(i)
    if (c < 0x30 || c > 0x39) break
    value = value * 10 + (c - 0x30)
  }
  DIGITS = i - start
  if (DIGITS === 0 || DIGITS > 15 || (DIGITS > 1 && text.charCodeAt(start) === 0x30)) return -1
  return value
}

/** The JSON integer that is all of `text` from `start` to `end`, or NOT_READ. */
function integerAt (text, start, end) {
  const negative = text.charCodeAt(start) === 0x2d
  const from = negative ? start + 1 : start
  const value = digitsAt(text, from, end)
  if (value < 0 || from + DIGITS !== end) return NOT_READ
  return negative ? -value : value
}

/**
 * The frame limit in bytes: MOTIA_STEP_MAX_FRAME_BYTES (decimal), which the
 * parent sets for every worker; absent, malformed or not positive: 16 MiB.
 */
function frameLimit (env = process.env) {
  const raw = String(env.MOTIA_STEP_MAX_FRAME_BYTES || '').trim()
  if (/^[0-9]+$/.test(raw)) {
    const n = Number(raw)
    if (n > 0 && Number.isSafeInteger(n)) return n
  }
  return DEFAULT_MAX_FRAME
}

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?:^|[^\ud800-\udbff])[\udc00-\udfff]/
const wellFormed = typeof String.prototype.isWellFormed === 'function'
  ? (s) => s.isWellFormed()
  : (s) => !LONE_SURROGATE.test(s)

const LONE_SURROGATES = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g

/**
 * `text` with each lone surrogate as "?" (as the other runners write them):
 * JSON.stringify writes one as an escape that no strict reader (the
 * parent's) takes, so an error message holding one would be lost whole.
 */
function wellFormedText (text) {
  return wellFormed(text) ? text : text.replace(LONE_SURROGATES, '?')
}

function pathOf (parent, key) {
  const parts = []
  while (parent !== null) {
    parts.push(typeof key === 'number' ? `[${key}]` : `.${key}`)
    key = parent[2]
    parent = parent[1]
  }
  parts.push(String(key))
  return parts.reverse().join('')
}

function kindOf (v) {
  if (typeof v === 'function') return 'a function'
  if (typeof v === 'symbol') return 'a symbol'
  if (typeof v === 'bigint') return 'a BigInt (use a Number)'
  if (v === undefined) return 'undefined (a missing argument?)'
  const name = v && v.constructor && v.constructor.name
  return name ? `a ${name}` : 'an object that is not a plain one'
}

/**
 * Refuse what JSON cannot carry, naming where it is (`value[2].when`), with
 * INVALID_ARGUMENT: undefined (as a value, an array element, a hole or a
 * field), NaN and infinities, functions, symbols (values or keys), BigInt,
 * Dates, Maps and every object that is not a plain object or an array, lone
 * surrogates, cycles. Containers nested more than MAX_DEPTH (+ extraDepth
 * for an envelope such as `items`) deep are LIMIT_EXCEEDED. Iterative: no
 * value can exhaust the stack. Throws; returns nothing.
 */
function checkJson (value, name, extraDepth = 0) {
  const fail = (parent, key, what) => { throw new InvalidArgumentError(`${pathOf(parent, key)}: ${what}`) }
  // The common arguments (a group, a key, a delta) need no walk.
  if (typeof value === 'string' && wellFormed(value)) return
  if (typeof value === 'number' && Number.isFinite(value)) return
  const limit = MAX_DEPTH + extraDepth
  // [value, parent node, key in parent, depth]; a node is [container, parent node, key]
  const stack = [[value, null, name, 0]]
  while (stack.length > 0) {
    const [v, parent, key, depth] = stack.pop()
    switch (typeof v) {
      case 'string':
        if (!wellFormed(v)) fail(parent, key, 'a lone surrogate is not JSON text')
        break
      case 'number':
        if (!Number.isFinite(v)) fail(parent, key, `${v} is not JSON (only finite numbers are)`)
        break
      case 'boolean':
        break
      case 'object': {
        if (v === null) break
        const isArray = Array.isArray(v)
        if (!isArray) {
          const proto = Object.getPrototypeOf(v)
          if (proto !== Object.prototype && proto !== null) fail(parent, key, `${kindOf(v)} is not JSON`)
        }
        if (depth >= limit) tooDeep(v, parent, key, limit)
        const node = [v, parent, key]
        if (isArray) {
          for (let i = v.length - 1; i >= 0; i--) {
            if (!(i in v)) fail(node, i, 'a hole in an array is not JSON')
            stack.push([v[i], node, i, depth + 1])
          }
        } else {
          if (Object.getOwnPropertySymbols(v).length > 0) fail(parent, key, 'a symbol key is not JSON')
          for (const k of Object.keys(v)) {
            if (!wellFormed(k)) fail(parent, key, 'a key with a lone surrogate is not JSON text')
            stack.push([v[k], node, k, depth + 1])
          }
        }
        break
      }
      default:
        fail(parent, key, `${kindOf(v)} is not JSON`)
    }
  }
}

function tooDeep (v, parent, key, limit) {
  let node = parent
  let root = key
  let first = null
  while (node !== null) {
    if (node[0] === v) first = node // the occurrence nearest the root names the cycle best
    root = node[2]
    node = node[1]
  }
  if (first !== null) throw new InvalidArgumentError(`${root}: a cyclic value is not JSON (${pathOf(first[1], first[2])} contains itself)`)
  throw new LimitExceededError(`${root}: nested more than ${limit} levels deep`)
}

/** The type and id of a frame too big to decode, from its first bytes. */
function sniff (head) {
  const text = head.toString('latin1')
  const kind = TYPE_RE.exec(text)
  const id = ID_RE.exec(text)
  if (!kind || !id) return [null, null]
  try {
    return [kind[1], JSON.parse(Buffer.from(id[1], 'latin1').toString('utf8'))]
  } catch (e) {
    return [null, null]
  }
}

/** `text` cut at SHOWN characters. */
function cut (text) {
  return text.length > SHOWN ? `${text.slice(0, SHOWN)}...` : text
}

/** `value` as JSON text for a report, cut at SHOWN characters. */
function shown (value) {
  let text
  try {
    text = JSON.stringify(value)
  } catch (e) {
    text = undefined
  }
  return cut(text === undefined ? String(typeof value) : text)
}

/** The UTF-8 size of a frame over `limit`, or 0 when it fits (counted only when it might not). */
function oversize (line, limit) {
  if (line.length * 3 <= limit) return 0
  const size = Buffer.byteLength(line, 'utf8')
  return size > limit ? size : 0
}

/**
 * Microseconds to spin for a lone request's reply (0 = never), from
 * MOTIA_STEP_SPIN_US (default 50, capped at 10 ms); 0 on a single CPU,
 * where spinning would only delay the parent.
 */
function spinMicros (env = process.env, cpus = (os.availableParallelism ? os.availableParallelism() : os.cpus().length)) {
  const raw = env.MOTIA_STEP_SPIN_US
  let micros = raw === undefined || raw === '' ? 50 : Number(raw)
  if (!Number.isFinite(micros)) micros = Number.isNaN(micros) ? 50 : 10000
  if (micros <= 0 || cpus < 2) return 0
  return Math.min(micros, 10000)
}

class PeerClosedError extends StateError {
  constructor (message) {
    super(message, 'UNAVAILABLE')
    this.name = 'PeerClosedError'
  }
}

class RpcClient {
  /**
   * @param {import('stream').Readable} input  frames from the parent
   * @param {{write(chunk: string): any}} output  frames to the parent
   * @param {object} [options]
   * @param {(frame: object) => void} [options.onRequest]  requests from the parent
   * @param {number} [options.maxFrameBytes]  default: frameLimit() (MOTIA_STEP_MAX_FRAME_BYTES)
   * @param {number} [options.inputFd]  the fd behind `input`, non-blocking: enables the spin
   * @param {number} [options.outputFd]  the fd behind `output`: a spinning request writes to it directly
   * @param {number} [options.spinMicros]
   */
  constructor (input, output, { onRequest, maxFrameBytes = frameLimit(), inputFd, outputFd, spinMicros: spin } = {}) {
    this.input = input
    this.output = output
    this.onRequest = onRequest || (() => {})
    this.maxFrameBytes = maxFrameBytes
    this.pending = new Map()
    this.nextId = 1
    this.queue = []
    this.flushScheduled = false
    this.closed = false
    this.chunks = []
    this.buffered = 0
    this.discarding = false
    this.closedPromise = new Promise((resolve) => { this.resolveClosed = resolve })
    this.inputFd = inputFd
    this.outputFd = outputFd
    this.spinNs = inputFd === undefined ? 0n : BigInt(Math.round((spin === undefined ? spinMicros() : spin) * 1000))
    this.spinBuffer = null
    this.feeding = false
    this.skip = 0
    this.misses = 0
    this.spins = 0 // spins that ran, and those that got a reply (for tests)
    this.hits = 0
    this.heads = new Map() // method -> the frame's text between the id and the args
    this.flushSoon = () => this.flush()
    /** Why the channel closed when reading it failed (a bug of ours), else null: the worker exits with 1. */
    this.failure = null
    input.on('data', (chunk) => this.feedGuarded(chunk))
    input.on('end', () => this.close('the parent closed the channel'))
    input.on('error', (e) => this.close(`the channel failed: ${e.message}`))
    if (typeof output.on === 'function') output.on('error', (e) => this.close(`writing to the parent failed: ${e.message}`))
  }

  /**
   * `feed`, where only a bug of ours can throw (the parent's bad frames are
   * answered, not thrown): the replies read with the frame that threw may be
   * lost, so no call waiting can count on its reply. Every one fails now and
   * the channel closes (the worker exits with 1), rather than wait for ever.
   */
  feedGuarded (chunk) {
    try {
      this.feed(chunk)
    } catch (e) {
      if (this.closed) return
      this.failure = `the reader failed (${e && e.name}: ${e && e.message})`
      process.stderr.write(`motia-state: the reader failed: ${e && e.stack ? e.stack : e}\n`)
      this.input.pause()
      this.close(this.failure)
    }
  }

  /**
   * Split raw bytes into lines. A line over the limit is answered as soon as
   * it crosses it (oversized) and the rest of it is skipped, never buffered.
   */
  feed (chunk) {
    let start = 0
    if (this.buffered === 0 && this.chunks.length === 0 && !this.discarding) {
      // The common case: whole lines, together within the limit, decoded as
      // one string and split there. No UTF-8 sequence contains the byte
      // 0x0a, so text cut at a newline decodes as its lines would alone.
      const last = chunk.lastIndexOf(NEWLINE)
      if (last >= 0 && last <= this.maxFrameBytes) {
        const decoded = chunk.toString('utf8', 0, last)
        // A U+FFFD may stand for bytes that are not UTF-8: such lines take
        // the path below, which checks each line's bytes.
        if (decoded.indexOf('\ufffd') === -1) {
          const lines = decoded.split('\n')
          for (let i = 0; i < lines.length; i++) this.text(lines[i])
          start = last + 1
          if (start === chunk.length) return
          chunk = chunk.subarray(start)
          start = 0
        }
      }
    }
    let nl = chunk.indexOf(NEWLINE, start)
    while (nl !== -1) {
      if (this.buffered === 0 && this.chunks.length === 0 && !this.discarding && nl - start <= this.maxFrameBytes) {
        // The common case: a whole line inside this chunk.
        this.line(chunk.subarray(start, nl))
        start = nl + 1
        nl = chunk.indexOf(NEWLINE, start)
        continue
      }
      const piece = chunk.subarray(start, nl)
      if (this.discarding) {
        this.discarding = false
      } else if (this.buffered + piece.length > this.maxFrameBytes) {
        this.oversized(this.buffered + piece.length, piece)
      } else {
        this.chunks.push(piece)
        const line = this.chunks.length === 1 ? piece : Buffer.concat(this.chunks)
        this.chunks = []
        this.buffered = 0
        this.line(line)
      }
      this.chunks = []
      this.buffered = 0
      start = nl + 1
      nl = chunk.indexOf(NEWLINE, start)
    }
    if (start < chunk.length && !this.discarding) {
      const rest = chunk.subarray(start)
      if (this.buffered + rest.length > this.maxFrameBytes) {
        this.oversized(this.buffered + rest.length, rest)
        this.discarding = true
      } else {
        this.chunks.push(rest)
        this.buffered += rest.length
      }
    }
  }

  /** A frame over the limit: a request gets LIMIT_EXCEEDED, a reply fails its call. */
  oversized (size, last) {
    const head = Buffer.concat([...this.chunks, last.subarray(0, HEAD_BYTES)]).subarray(0, HEAD_BYTES)
    this.chunks = []
    this.buffered = 0
    this.unreadable(head, 'LIMIT_EXCEEDED', `a frame of at least ${size} bytes is over the ${this.maxFrameBytes}-byte frame limit`)
  }

  /**
   * A frame we will not decode still gets its answer when its id can be
   * read: a request an error reply, a reply the failure of its call.
   */
  unreadable (head, code, message) {
    const [kind, id] = sniff(head)
    if (kind === 'rpc_response' && this.pending.has(id)) {
      const waiter = this.pending.get(id)
      this.pending.delete(id)
      waiter.reject(errorForCode(code, `the reply: ${message}`))
    } else {
      this.refuse(kind === 'rpc_request' ? id : null, code, message)
    }
  }

  /**
   * A frame of the parent's that is not served: one line on stderr saying
   * why, and an error reply when it is a request whose id can be read.
   * Never answers a frame that does not say it is a request: its id may
   * be that of one of the parent's own requests.
   */
  refuse (id, code, message) {
    const answered = id !== undefined && id !== null && !this.closed
    process.stderr.write(`motia-state: ${message}: ${answered ? `answered ${code}` : 'dropped (no id to answer)'}\n`)
    if (answered) this.respondError(id, code, message)
  }

  /**
   * One line, already decoded. A reply in the parent's own shape
   * (`{"type":"rpc_response","id":<n>,"result":<json>}`) is read without
   * building the frame; anything else goes through `line`.
   */
  text (line) {
    if (line.length === 0) return
    const end = line.length - 1
    if (line.charCodeAt(end) === 0x7d && line.startsWith(REPLY_HEAD)) {
      const id = digitsAt(line, REPLY_HEAD.length, end)
      const at = REPLY_HEAD.length + DIGITS
      if (id > 0 && line.startsWith(RESULT_KEY, at)) {
        const waiter = this.pending.get(id)
        if (waiter !== undefined) {
          const from = at + RESULT_KEY.length
          // An integer result (an increment's) is read here; anything else by JSON.parse.
          let result = integerAt(line, from, end)
          if (result === NOT_READ) {
            try {
              result = JSON.parse(line.slice(from, end))
            } catch (e) {
              result = NOT_READ // not a lone value: the whole frame says what it is
            }
          }
          if (result !== NOT_READ) {
            this.pending.delete(id)
            waiter.resolve(result)
            return
          }
        }
      }
    }
    this.line(Buffer.from(line, 'utf8'))
  }

  line (bytes) {
    if (bytes.length === 0) return
    const text = bytes.toString('utf8')
    if (text.indexOf('\ufffd') !== -1 && !isUtf8(bytes)) {
      // Decoding would put U+FFFD in their place: a request would run on text the parent never sent.
      this.unreadable(bytes.subarray(0, HEAD_BYTES), 'INVALID_ARGUMENT', 'a frame that is not UTF-8 text')
      return
    }
    let frame
    try {
      frame = JSON.parse(text)
    } catch (e) {
      this.unreadable(bytes.subarray(0, HEAD_BYTES), 'INVALID_ARGUMENT', `a frame that is not JSON (${cut(e.message)})`)
      return
    }
    if (frame === null || typeof frame !== 'object' || Array.isArray(frame)) {
      const what = frame === null ? 'null' : Array.isArray(frame) ? 'an array' : `a ${typeof frame}`
      this.refuse(null, 'INVALID_ARGUMENT', `a frame that is not a JSON object (${what})`)
      return
    }
    if (frame.type === 'rpc_response') {
      const waiter = this.pending.get(frame.id)
      if (!waiter) {
        process.stderr.write(`motia-state: a reply to no request (id ${JSON.stringify(frame.id)})\n`)
        return
      }
      this.pending.delete(frame.id)
      if (frame.error !== undefined && frame.error !== null) {
        const err = frame.error
        waiter.reject(errorForCode(err.code, err.message || String(err.code), err.details))
      } else {
        waiter.resolve(frame.result === undefined ? null : frame.result)
      }
    } else if (frame.type === 'rpc_request') {
      const id = frame.id
      if (id !== undefined && id !== null && typeof id !== 'string' && !Number.isSafeInteger(id)) {
        // 1.5 or 1e400 is no id: an answer could not carry it back as it came.
        this.refuse(null, 'INVALID_ARGUMENT', `a request whose id is neither a string nor an integer (${shown(id)})`)
        return
      }
      if (typeof frame.method !== 'string') {
        this.refuse(id, 'INVALID_ARGUMENT', `a request whose method is not a string (${shown(frame.method)})`)
        return
      }
      this.onRequest(frame)
    } else {
      this.refuse(null, 'INVALID_ARGUMENT', `a frame whose type is neither rpc_request nor rpc_response (${frame.type === undefined ? 'none' : shown(frame.type)})`)
    }
  }

  /** Queue one frame; throws LIMIT_EXCEEDED (nothing queued) when it is over the limit. */
  send (frame, what) {
    if (this.closed) throw new PeerClosedError('the channel to the parent is closed')
    const line = JSON.stringify(frame)
    const size = oversize(line, this.maxFrameBytes)
    if (size) throw new LimitExceededError(`the ${what} encodes to ${size} bytes, over the ${this.maxFrameBytes}-byte frame limit`)
    this.enqueue(line)
  }

  /** Queue one encoded frame (without its newline) for the next write. */
  enqueue (line) {
    this.queue.push(line)
    if (this.queue.length >= FLUSH_EVERY) {
      // A long burst leaves in slices, so the parent starts on the first
      // requests while the rest are still being encoded.
      this.flush()
    } else if (!this.flushScheduled) {
      this.flushScheduled = true
      // Every frame queued in this tick goes out in one write.
      process.nextTick(this.flushSoon)
    }
  }

  flush () {
    this.flushScheduled = false
    const queue = this.queue
    if (queue.length === 0) return
    const data = queue.length === 1 ? queue[0] + '\n' : queue.join('\n') + '\n'
    queue.length = 0
    this.writeNow(data)
  }

  /**
   * Write `data` now: straight to the fd when the stream holds nothing
   * (no stream bookkeeping, no write request), else through the stream,
   * which keeps the order. What the fd does not take goes to the stream.
   */
  writeNow (data) {
    if (this.outputFd === undefined || this.output.writableLength > 0) {
      this.output.write(data)
      return
    }
    let n = 0
    try {
      n = fs.writeSync(this.outputFd, data)
    } catch (e) {
      if (e.code !== 'EAGAIN' && e.code !== 'EWOULDBLOCK') {
        // EPIPE: the parent stopped reading. The channel is dead, which
        // ends the worker; thrown, it would only reach the handler of the
        // step's unhandled errors, which writes to this same channel.
        this.close(`writing to the parent failed: ${e.message}`)
        return
      }
    }
    if (n === 0) this.output.write(data)
    else if (n < Buffer.byteLength(data)) this.output.write(Buffer.from(data, 'utf8').subarray(n))
  }

  /**
   * Call `method` on the parent; resolves with its result or rejects with its
   * error. Args that are not JSON (INVALID_ARGUMENT) or a frame over the
   * limit (LIMIT_EXCEEDED) reject before anything is sent. `checked`: the
   * caller has already checked the args.
   */
  request (method, args, options) {
    const alone = this.pending.size === 0 && this.queue.length === 0
    if (args === undefined) args = null
    const id = this.nextId
    let line
    try {
      if (options === undefined || options.checked !== true) checkJson(args, 'args', WRAP_DEPTH)
      if (this.closed) throw new PeerClosedError('the channel to the parent is closed')
      // The frame as text around the args' JSON: the same bytes as
      // stringifying the whole frame, without building it.
      let head = this.heads.get(method)
      if (head === undefined) {
        head = `,"method":${JSON.stringify(method)},"args":`
        this.heads.set(method, head)
      }
      line = '{"type":"rpc_request","id":' + id + head + JSON.stringify(args) + '}'
      const size = oversize(line, this.maxFrameBytes)
      if (size) throw new LimitExceededError(`the ${method} request encodes to ${size} bytes, over the ${this.maxFrameBytes}-byte frame limit`)
    } catch (e) {
      return Promise.reject(e instanceof StateError ? e : new InvalidArgumentError(`args: ${e.message}`))
    }
    this.nextId = id + 1
    let waiter
    const promise = new Promise((resolve, reject) => { waiter = { resolve, reject } })
    this.pending.set(id, waiter)
    this.enqueue(line)
    if (alone && this.spinNs > 0n) this.spin()
    return promise
  }

  /**
   * A sequential caller: send the request now and poll the pipe for its
   * reply for up to spinNs before returning to the event loop. Waking a
   * sleeping process on another core costs ~20 us on a VM; a reply caught
   * here costs none, and resolving before `await` even skips the loop turn.
   * Bounded: a spin that finds nothing makes the next 2, 4, ... 256 skip.
   * Reading the fd directly is safe because libuv only reads it from the
   * event loop, and we spin only when the stream holds no unread bytes.
   */
  spin () {
    this.flush()
    if (this.skip > 0) {
      this.skip--
      return
    }
    if (this.closed || this.feeding || this.input.readableLength > 0 || this.output.writableLength > 0) return
    const buffer = this.spinBuffer || (this.spinBuffer = Buffer.allocUnsafe(65536))
    this.spins++
    const n = this.poll(buffer)
    if (n === 0 || n === -2) return // end of input or an error: the stream sees it on its next read
    if (n > 0) {
      this.hits++
      this.misses = 0
      // Whole lines need no copy; a partial one is kept, so it must not
      // share the buffer. No spin reads into the buffer while it is fed.
      this.feeding = true
      try {
        this.feedGuarded(buffer[n - 1] === NEWLINE ? buffer.subarray(0, n) : Buffer.from(buffer.subarray(0, n)))
      } finally {
        this.feeding = false
      }
      return
    }
    this.misses++
    this.skip = Math.min(2 ** this.misses, MAX_SKIP)
  }

  /**
   * Read the input fd without blocking until bytes come or spinNs pass:
   * the byte count, 0 at end of input, -1 when nothing came, -2 on an error.
   * An empty pipe makes readSync throw EAGAIN; with no stack trace to
   * capture, each such poll costs a fraction as much, so the spin notices a
   * reply sooner and burns less. No other code runs meanwhile.
   */
  poll (buffer) {
    const limit = Error.stackTraceLimit
    Error.stackTraceLimit = 0
    try {
      const end = process.hrtime.bigint() + this.spinNs
      for (;;) {
        try {
          return fs.readSync(this.inputFd, buffer, 0, buffer.length, null)
        } catch (e) {
          if (e.code !== 'EAGAIN' && e.code !== 'EWOULDBLOCK') return -2
        }
        if (process.hrtime.bigint() >= end) return -1
      }
    } finally {
      Error.stackTraceLimit = limit
    }
  }

  /** A request without a reply; throws as `request` rejects. */
  notify (method, args) {
    checkJson(args === undefined ? null : args, 'args', WRAP_DEPTH)
    this.send({ type: 'rpc_request', method, args: args === undefined ? null : args }, `${method} notification`)
  }

  /**
   * Reply with a result, or with an error when it cannot go: STEP_FAILED
   * naming where it is not JSON (`result.when`), LIMIT_EXCEEDED when it is
   * nested past MAX_DEPTH + WRAP_DEPTH or over the frame limit.
   */
  respond (id, result) {
    try {
      checkJson(result === undefined ? null : result, 'result', WRAP_DEPTH)
      this.send({ type: 'rpc_response', id, result: result === undefined ? null : result }, "handler's result")
    } catch (e) {
      if (e instanceof LimitExceededError) {
        this.respondError(id, 'LIMIT_EXCEEDED', e.message)
      } else if (e instanceof StateError) {
        this.respondError(id, 'STEP_FAILED', `the handler returned a value that is not JSON: ${e.message}`)
      } else {
        throw e
      }
    }
  }

  /** Reply with an error (a message or stack too big for a frame is cut). */
  respondError (id, code, message, stack) {
    const error = { code, message: wellFormedText(String(message)) }
    if (stack) error.stack = wellFormedText(String(stack))
    try {
      this.send({ type: 'rpc_response', id, error }, 'error reply')
    } catch (e) {
      if (!(e instanceof LimitExceededError)) throw e
      const room = Math.max(Math.floor(this.maxFrameBytes / 8), 64)
      this.send({ type: 'rpc_response', id, error: { code, message: `${error.message.slice(0, room)} [cut: over the frame limit]` } }, 'error reply')
    }
  }

  close (reason) {
    if (this.closed) return
    this.flush()
    this.closed = true
    for (const waiter of this.pending.values()) waiter.reject(new PeerClosedError(reason))
    this.pending.clear()
    this.resolveClosed()
  }
}

module.exports = { RpcClient, PeerClosedError, DEFAULT_MAX_FRAME, MAX_DEPTH, WRAP_DEPTH, frameLimit, checkJson, spinMicros }
