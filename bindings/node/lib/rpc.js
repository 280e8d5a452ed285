'use strict'
// NDJSON RPC over a pair of byte streams: requests both ways, pipelining,
// replies matched by id. Lines are split on raw bytes before decoding, so a
// multibyte character split across two reads never breaks a frame.

const fs = require('fs')
const os = require('os')
const { errorForCode, StateError } = require('./errors')

const DEFAULT_MAX_FRAME = 16 * 1024 * 1024
const NEWLINE = 0x0a
const FLUSH_EVERY = 256
/** Skipped spins after one that found nothing, at most (the backoff's cap). */
const MAX_SKIP = 256

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
   * @param {number} [options.maxFrameBytes]
   * @param {number} [options.inputFd]  the fd behind `input`, non-blocking: enables the spin
   * @param {number} [options.outputFd]  the fd behind `output`: a spinning request writes to it directly
   * @param {number} [options.spinMicros]
   */
  constructor (input, output, { onRequest, maxFrameBytes = DEFAULT_MAX_FRAME, inputFd, outputFd, spinMicros: spin } = {}) {
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
    input.on('data', (chunk) => this.feed(chunk))
    input.on('end', () => this.close('the parent closed the channel'))
    input.on('error', (e) => this.close(`the channel failed: ${e.message}`))
  }

  /** Split raw bytes into lines; a line over the limit is dropped, bounded. */
  feed (chunk) {
    let start = 0
    let nl = chunk.indexOf(NEWLINE, start)
    while (nl !== -1) {
      const piece = chunk.subarray(start, nl)
      if (this.discarding) {
        this.discarding = false
      } else if (this.buffered + piece.length > this.maxFrameBytes) {
        this.oversized()
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
        this.oversized()
        this.discarding = true
      } else {
        this.chunks.push(rest)
        this.buffered += rest.length
      }
    }
  }

  oversized () {
    this.chunks = []
    this.buffered = 0
    process.stderr.write(`motia-state: dropped a frame over ${this.maxFrameBytes} bytes\n`)
  }

  line (bytes) {
    if (bytes.length === 0) return
    let frame
    try {
      frame = JSON.parse(bytes.toString('utf8'))
    } catch (e) {
      process.stderr.write(`motia-state: not a frame: ${bytes.toString('utf8').slice(0, 200)}\n`)
      return
    }
    if (frame === null || typeof frame !== 'object') return
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
      this.onRequest(frame)
    }
  }

  send (frame) {
    if (this.closed) throw new PeerClosedError('the channel to the parent is closed')
    // JSON.stringify throws on cycles and BigInt: before anything is queued.
    this.queue.push(JSON.stringify(frame))
    if (this.queue.length >= FLUSH_EVERY) {
      // A long burst leaves in slices, so the parent starts on the first
      // requests while the rest are still being encoded.
      this.flush()
    } else if (!this.flushScheduled) {
      this.flushScheduled = true
      // Every frame queued in this tick goes out in one write.
      process.nextTick(() => this.flush())
    }
  }

  flush () {
    this.flushScheduled = false
    if (this.queue.length === 0) return
    const data = this.queue.join('\n') + '\n'
    this.queue = []
    this.output.write(data)
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
      if (e.code !== 'EAGAIN' && e.code !== 'EWOULDBLOCK') throw e
    }
    if (n === 0) this.output.write(data)
    else if (n < Buffer.byteLength(data)) this.output.write(Buffer.from(data, 'utf8').subarray(n))
  }

  /** Call `method` on the parent; resolves with its result or rejects with its error. */
  request (method, args) {
    const id = this.nextId++
    if (this.spinNs > 0n && this.pending.size === 0 && this.queue.length === 0 && !this.closed) {
      return this.requestAlone(id, method, args)
    }
    const promise = new Promise((resolve, reject) => {
      try {
        this.send({ type: 'rpc_request', id, method, args: args === undefined ? null : args })
      } catch (e) {
        reject(e instanceof StateError ? e : new (require('./errors').InvalidArgumentError)(`args: ${e.message}`))
        return
      }
      this.pending.set(id, { resolve, reject })
    })
    return promise
  }

  /**
   * The only request in flight (a sequential caller): its frame is written
   * at once, bypassing the tick's queue, and the pipe is spun on for the
   * reply before returning.
   */
  requestAlone (id, method, args) {
    let line
    try {
      line = JSON.stringify({ type: 'rpc_request', id, method, args: args === undefined ? null : args }) + '\n'
    } catch (e) {
      return Promise.reject(new (require('./errors').InvalidArgumentError)(`args: ${e.message}`))
    }
    let waiter
    const promise = new Promise((resolve, reject) => { waiter = { resolve, reject } })
    this.pending.set(id, waiter)
    try {
      this.writeNow(line)
    } catch (e) {
      this.close(`the channel failed: ${e.message}`)
      return promise
    }
    this.spin()
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
        this.feed(buffer[n - 1] === NEWLINE ? buffer.subarray(0, n) : Buffer.from(buffer.subarray(0, n)))
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

  /** A request without a reply. */
  notify (method, args) {
    this.send({ type: 'rpc_request', method, args: args === undefined ? null : args })
  }

  respond (id, result) {
    this.send({ type: 'rpc_response', id, result: result === undefined ? null : result })
  }

  respondError (id, code, message, stack) {
    const error = { code, message }
    if (stack) error.stack = stack
    this.send({ type: 'rpc_response', id, error })
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

module.exports = { RpcClient, PeerClosedError, DEFAULT_MAX_FRAME, spinMicros }
