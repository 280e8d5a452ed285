'use strict'
// Load a step file and answer the parent's `invoke` requests.
//
// The protocol travels on private descriptors the parent names in
// MOTIA_STEP_PROTOCOL_FDS (fds 0 and 1 then read /dev/null and write to
// stderr), reopened close-on-exec so that no process the step starts
// inherits them. Started by hand, without that variable, the protocol is on
// fds 0 and 1. Before the step loads, `process.stdout` and `console` are
// pointed at stderr and `process.stdin` at an empty stream, so nothing a
// step prints or reads can touch the channel.

const fs = require('fs')
const net = require('net')
const path = require('path')
const { Console } = require('console')
const { Readable } = require('stream')
const { pathToFileURL } = require('url')
const { RpcClient } = require('./rpc')
const { StateManager } = require('./state')

/** Open `fd` again as a new close-on-exec descriptor (libuv opens every file so) and close `fd`. */
function reopenPrivate (fd, flags) {
  let copy
  try {
    copy = fs.openSync(`/dev/fd/${fd}`, flags | fs.constants.O_NONBLOCK)
  } catch (e) { // no /dev/fd here: keep the fd (it works, but a child could inherit it)
    return fd
  }
  fs.closeSync(fd)
  return copy
}

/** The protocol's { readFd, writeFd }; the variable is removed so that it cannot mislead a child. */
function protocolFds (env = process.env) {
  const spec = env.MOTIA_STEP_PROTOCOL_FDS
  delete env.MOTIA_STEP_PROTOCOL_FDS
  const m = /^(\d+),(\d+)$/.exec(spec || '')
  if (!m || Number(m[1]) < 3 || Number(m[2]) < 3) return { readFd: 0, writeFd: 1 }
  return {
    readFd: reopenPrivate(Number(m[1]), fs.constants.O_RDONLY),
    writeFd: reopenPrivate(Number(m[2]), fs.constants.O_WRONLY),
  }
}

function protectStdio ({ readFd, writeFd } = protocolFds()) {
  const input = new net.Socket({ fd: readFd, readable: true, writable: false })
  const output = new net.Socket({ fd: writeFd, readable: false, writable: true })
  const stderr = process.stderr
  Object.defineProperty(process, 'stdout', { configurable: true, enumerable: true, get: () => stderr })
  const empty = new Readable({ read () { this.push(null) } })
  Object.defineProperty(process, 'stdin', { configurable: true, enumerable: true, get: () => empty })
  const toStderr = new Console({ stdout: stderr, stderr })
  for (const name of Object.keys(Console.prototype)) {
    if (typeof toStderr[name] === 'function') console[name] = toStderr[name].bind(toStderr)
  }
  return { input, output, inputFd: readFd, outputFd: writeFd }
}

/** Import a step by path: CommonJS by require, ESM (.mjs, or "type": "module") by import(). */
async function loadStep (file) {
  const resolved = path.resolve(file)
  if (resolved.endsWith('.mjs')) return import(pathToFileURL(resolved).href)
  try {
    return require(resolved)
  } catch (e) {
    if (e && e.code === 'ERR_REQUIRE_ESM') return import(pathToFileURL(resolved).href)
    throw e
  }
}

/** `value` as JSON text for a report, cut at 100 characters (as the client's reports show values). */
function shown (value) {
  let text
  try {
    text = JSON.stringify(value)
  } catch (e) {}
  if (text === undefined) text = typeof value
  return text.length > 100 ? `${text.slice(0, 100)}...` : text
}

/** String(read()), or `fallback` when reading or converting throws. */
function textOf (read, fallback) {
  try {
    return String(read())
  } catch (e) {
    return fallback
  }
}

/** Characters of a thrown value's JSON text that a failure's message shows, at most. */
const THROWN_TEXT = 1000

/**
 * A thrown object or array as JSON text, cut at THROWN_TEXT characters
 * (then ending in `...`). It never throws and stops early on a large value:
 * a cycle shows as "[Circular]", a BigInt as its digits, a property whose
 * getter (or a toJSON) throws as "[unreadable: Name: message]"; functions,
 * symbols and undefined are left out as JSON leaves them (null in an array).
 * Undefined when even the keys cannot be read (a Proxy whose traps throw).
 */
function thrownText (value) {
  const parts = []
  let size = 0
  const open = new Set()
  const put = (text) => { parts.push(text); size += text.length }
  const unreadable = (e) => JSON.stringify(`[unreadable: ${describeFailure(e)[0]}]`)
  const read = (holder, key) => {
    let v = holder[key]
    if (v !== null && typeof v === 'object' && typeof v.toJSON === 'function') v = v.toJSON(key)
    return v
  }
  const skipped = (v) => v === undefined || typeof v === 'function' || typeof v === 'symbol'
  const walk = (v) => {
    if (size > THROWN_TEXT) return
    if (v === null) return put('null')
    switch (typeof v) {
      case 'string': return put(JSON.stringify(v))
      case 'number': return put(Number.isFinite(v) ? String(v) : 'null')
      case 'boolean': return put(String(v))
      case 'bigint': return put(String(v))
      case 'object': break
      default: return put('null')
    }
    if (open.has(v)) return put('"[Circular]"')
    open.add(v)
    try {
      if (Array.isArray(v)) {
        put('[')
        for (let i = 0; i < v.length && size <= THROWN_TEXT; i++) {
          if (i > 0) put(',')
          let item
          try {
            item = read(v, i)
          } catch (e) {
            put(unreadable(e))
            continue
          }
          if (skipped(item)) put('null')
          else walk(item)
        }
        put(']')
      } else {
        put('{')
        let first = true
        for (const key of Object.keys(v)) {
          if (size > THROWN_TEXT) break
          let item
          try {
            item = read(v, key)
          } catch (e) {
            put(`${first ? '' : ','}${JSON.stringify(key)}:${unreadable(e)}`)
            first = false
            continue
          }
          if (skipped(item)) continue
          put(`${first ? '' : ','}${JSON.stringify(key)}:`)
          first = false
          walk(item)
        }
        put('}')
      }
    } finally {
      open.delete(v)
    }
  }
  try {
    let top = value
    try {
      if (typeof top.toJSON === 'function') top = top.toJSON('')
    } catch (e) {
      return undefined
    }
    if (top === null || typeof top !== 'object') return skipped(top) ? undefined : JSON.stringify(top)
    walk(top)
  } catch (e) {
    return undefined
  }
  const text = parts.join('')
  return text.length > THROWN_TEXT ? `${text.slice(0, THROWN_TEXT)}...` : text
}

/**
 * `[message, stack]` for anything a step throws: `Name: message` for an
 * Error; a plain object or array (anything else that is an object) as its
 * JSON text, cut short when long; a string or other primitive as its text
 * (`42`, `null`). Never throws, whatever the value (a null-prototype
 * object, a cycle, a BigInt, a throwing getter or toString): the failure
 * must become the reply, not end the worker.
 */
function describeFailure (e) {
  let isError = false
  try {
    isError = e instanceof Error
  } catch (inner) {} // a Proxy whose getPrototypeOf throws
  let message
  if (isError) {
    message = `${textOf(() => e.name, 'Error')}: ${textOf(() => e.message, '')}`
  } else if (e !== null && typeof e === 'object') {
    message = thrownText(e)
    if (message === undefined) message = 'a thrown object that cannot be shown as text'
  } else {
    message = textOf(() => e, `a thrown ${typeof e} that cannot be shown as text`)
  }
  const stack = e !== null && (typeof e === 'object' || typeof e === 'function') ? textOf(() => e.stack || '', '') : ''
  return [message, stack || undefined]
}

function makeLogger (client, traceId) {
  const log = (level) => (msg, fields) => {
    const record = { ...(fields && typeof fields === 'object' ? fields : {}), level, msg: String(msg), traceId }
    client.notify('log', record) // a field that is not JSON throws INVALID_ARGUMENT naming it
  }
  return { debug: log('debug'), info: log('info'), warn: log('warning'), warning: log('warning'), error: log('error') }
}

function emitArgs (event, data) {
  if (event !== null && typeof event === 'object') return { topic: event.topic, data: event.data === undefined ? null : event.data }
  return { topic: event, data: data === undefined ? null : data }
}

/**
 * The config as JSON: a function inside it (a native `condition`), or any
 * other value JSON cannot carry (a schema object), shows as `{"native": true}`.
 */
function describeConfig (value) {
  if (value === null || typeof value === 'string' || typeof value === 'boolean') return value
  if (typeof value === 'number') return Number.isFinite(value) ? value : { native: true }
  if (Array.isArray(value)) return value.map(describeConfig)
  if (typeof value === 'object') {
    const proto = Object.getPrototypeOf(value)
    if (proto === Object.prototype || proto === null) {
      const out = {}
      for (const [k, v] of Object.entries(value)) {
        if (v !== undefined) out[k] = describeConfig(v)
      }
      return out
    }
  }
  return { native: true }
}

class Worker {
  constructor (stepPath) {
    this.stepPath = stepPath
    this.stepFile = path.resolve(stepPath) // as the log names it
    this.module = null
    this.loadError = null
  }

  async serve () {
    const { input, output, inputFd, outputFd } = protectStdio()
    this.client = new RpcClient(input, output, { onRequest: (frame) => this.onRequest(frame), inputFd, outputFd })
    this.state = new StateManager(this.client)
    // import() is asynchronous: an invoke that arrives meanwhile waits for it.
    this.loaded = loadStep(this.stepPath).then(
      (mod) => { this.module = mod },
      (e) => {
        this.loadError = e
        try {
          console.error(e && e.stack ? e.stack : e)
        } catch (inner) { // a stack getter that throws
          console.error(describeFailure(e)[0])
        }
      },
    )
    await this.client.closedPromise
    // Exit once the last frames are out, even if the step left timers or
    // sockets open: the parent is done with this worker. A broken pipe ends
    // the wait too (its error is the reason the channel closed).
    await new Promise((resolve) => {
      output.once('error', resolve)
      output.once('close', resolve)
      output.end(resolve)
    })
  }

  /**
   * An error the step threw or rejected where nothing handles it (a timer
   * callback, a promise nobody awaits, an EventEmitter 'error' with no
   * listener): an `error` record on the parent's log channel naming the
   * step file, and the worker serves on, as the Python and Ruby runners do
   * with a thread's or a task's exception. Only when the channel is gone
   * does it go to stderr instead. Never throws.
   */
  unhandled (e) {
    const [message, stack] = describeFailure(e)
    const msg = `${this.stepFile}: an error nothing handled: ${message}`
    try {
      if (this.client && !this.client.closed) {
        this.client.notify('log', { level: 'error', msg, stepFile: this.stepFile, error: message, stack: stack || '' })
        return
      }
    } catch (inner) {} // a message that cannot travel: stderr still has it
    try {
      process.stderr.write(`motia-state: ${msg}\n${stack || ''}\n`)
    } catch (inner) {}
  }

  /**
   * A request of the parent's (its id, if any, and its method, a string,
   * already checked by the client). What cannot be served is refused, as
   * the parent refuses a worker's: an unknown method NOT_FOUND, a request
   * whose answer nothing could carry (no id) or whose args do not fit
   * INVALID_ARGUMENT, each reported on stderr.
   */
  onRequest (frame) {
    const { method, id, args } = frame
    if (method === 'shutdown') {
      this.client.close('shutdown')
      return
    }
    if (method !== 'invoke' && method !== 'config' && method !== 'condition') {
      this.client.refuse(id, 'NOT_FOUND', `a request for an unknown method ${shown(method)} (the Node runner serves invoke, config, condition and shutdown)`)
      return
    }
    if (id === undefined || id === null) {
      this.client.refuse(null, 'INVALID_ARGUMENT', `a request for ${shown(method)} without an id (nothing could carry its answer)`)
      return
    }
    const fits = method === 'config' || (args !== null && typeof args === 'object' && !Array.isArray(args))
    if (!fits) {
      this.client.refuse(id, 'INVALID_ARGUMENT', `a request for ${shown(method)} whose args are not an object (${shown(args)})`)
      return
    }
    if (method === 'invoke') {
      this.invoke(id, args).catch((e) => this.internal(id, e))
    } else if (method === 'config') {
      this.answerConfig(id).catch((e) => this.internal(id, e))
    } else {
      this.answerCondition(id, args).catch((e) => this.internal(id, e))
    }
  }

  /**
   * A request the runner itself failed to answer (a bug of ours, never the
   * step's failure, which is its reply): INTERNAL, so the parent does not
   * wait for it until its timeout.
   */
  internal (id, e) {
    const [message, stack] = describeFailure(e)
    process.stderr.write(`motia-state: answering a request failed: ${stack || message}\n`)
    if (this.answerable(id)) this.client.respondError(id, 'INTERNAL', `the Node runner failed: ${message}`)
  }

  /** Reply with the step's exported `config` (null when none), without running the handler. */
  async answerConfig (id) {
    if (id === undefined || id === null) return
    await this.loaded
    if (this.loadError) {
      this.client.respondError(id, 'STEP_FAILED', ...describeFailure(this.loadError))
      return
    }
    try {
      // Reading it runs the step's code (a getter, a Proxy): its failure is the reply.
      const mod = this.module || {}
      let config = mod.config
      if (config === undefined && mod.default && typeof mod.default === 'object') config = mod.default.config
      this.client.respond(id, describeConfig(config === undefined ? null : config))
    } catch (e) {
      this.client.respondError(id, 'STEP_FAILED', `the step's config is not JSON: ${describeFailure(e)[0]}`)
    }
  }

  /** The condition function of `config.triggers[trigger]`, or the module's `condition` (trigger null). */
  findCondition (trigger) {
    const mod = this.module || {}
    const pick = (name) => mod[name] !== undefined ? mod[name] : (mod.default && typeof mod.default === 'object' ? mod.default[name] : undefined)
    let fn
    let where
    if (trigger === null || trigger === undefined) {
      fn = pick('condition')
      where = 'condition(value, ctx)'
    } else {
      const triggers = ((pick('config') || {}).triggers) || []
      if (!Number.isInteger(trigger) || trigger < 0 || trigger >= triggers.length) {
        throw new RangeError(`config.triggers has no trigger ${JSON.stringify(trigger)}`)
      }
      fn = triggers[trigger] && triggers[trigger].condition
      where = `config.triggers[${trigger}].condition`
    }
    if (typeof fn !== 'function') throw new TypeError(`step file ${this.stepPath} defines no function ${where}`)
    return fn
  }

  /** Reply with the condition function's result as a boolean; its ctx reads state (it may return a promise). */
  async answerCondition (id, args) {
    let result
    try {
      await this.loaded
      if (this.loadError) throw this.loadError
      const fn = this.findCondition(args.trigger)
      const client = this.client
      const ctx = {
        traceId: args.traceId,
        state: this.state,
        logger: makeLogger(client, args.traceId),
        change: args.change === undefined ? null : args.change,
        call: (method, callArgs) => client.request(method, callArgs),
      }
      result = await fn(args.value === undefined ? null : args.value, ctx)
    } catch (e) {
      if (this.answerable(id)) this.client.respondError(id, 'STEP_FAILED', ...describeFailure(e))
      return
    }
    if (this.answerable(id)) this.client.respond(id, Boolean(result))
  }

  /**
   * Whether a request can still be answered: it has an id, and the channel
   * is open (once it closed, by the parent or by a failed read, a call that
   * ends has nobody to tell, and the worker is on its way out).
   */
  answerable (id) {
    return id !== undefined && id !== null && !this.client.closed
  }

  async invoke (id, args) {
    let result
    try {
      result = await this.runHandler(args)
    } catch (e) {
      if (this.answerable(id)) this.client.respondError(id, 'STEP_FAILED', ...describeFailure(e))
      return
    }
    if (!this.answerable(id)) return
    try {
      this.client.respond(id, result)
    } catch (e) {
      this.client.respondError(id, 'STEP_FAILED', `the handler's return value is not JSON: ${describeFailure(e)[0]}`)
    }
  }

  async runHandler (args) {
    await this.loaded
    if (this.loadError) throw this.loadError
    const mod = this.module || {}
    const handler = typeof mod.handler === 'function'
      ? mod.handler
      : (mod.default && typeof mod.default.handler === 'function' ? mod.default.handler : null)
    if (!handler) throw new TypeError(`step file ${this.stepPath} exports no handler(data, ctx)`)
    const traceId = args.traceId
    const client = this.client
    const ctx = {
      traceId,
      state: this.state,
      logger: makeLogger(client, traceId),
      emit: (event, data) => client.request('emit', emitArgs(event, data)),
      flows: args.flows,
      /** Any method the orchestrator registered. */
      call: (method, callArgs) => client.request(method, callArgs),
    }
    return args.contextInFirstArg ? handler(ctx) : handler(args.data === undefined ? null : args.data, ctx)
  }
}

async function main (argv) {
  if (argv.length < 1) {
    process.stderr.write('usage: run_step.js <step file>\n')
    return 2
  }
  const worker = new Worker(argv[0])
  // An error the step leaves where nothing handles it (a timer that
  // throws, a promise it never awaits that rejects) is the step's bug, not
  // the worker's end: Node's default would exit, failing whatever
  // invocation runs by then, maybe one that had nothing to do with it.
  // Errors of the channel itself never get here: a failed read or write
  // closes it, and the worker exits.
  process.on('uncaughtException', (e) => worker.unhandled(e))
  process.on('unhandledRejection', (reason) => worker.unhandled(reason))
  await worker.serve()
  return worker.client.failure ? 1 : 0
}

module.exports = { Worker, describeFailure, loadStep, main, protectStdio, protocolFds }
