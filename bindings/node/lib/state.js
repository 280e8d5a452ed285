'use strict'
// ctx.state inside a Node step: every operation is one RPC call to the
// parent, which owns the state. Methods return promises, camelCase names.

const util = require('util')
const { ConflictError, InvalidArgumentError } = require('./errors')
const { checkJson, WRAP_DEPTH } = require('./rpc')

/** Optimistic `update`: attempts before CONFLICT (the core's count), and the backoff base (ms). */
const UPDATE_RETRIES = 64
/**
 * Levels of envelope around the values an argument holds. Records get room
 * for anything the parent can read: a record's value past a limit is the
 * parent's to report, as that record's failure in the result.
 */
const ENVELOPE = { items: 1, operations: WRAP_DEPTH }
const UPDATE_BACKOFF_MS = 0.5

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

function clone (value) {
  return value === undefined ? null : JSON.parse(JSON.stringify(value))
}

class StateManager {
  /** @param {import('./rpc').RpcClient} client */
  constructor (client) {
    this.client = client
  }

  /**
   * Check each argument under its own name (`value`, `items[2]`), then send.
   * What is not JSON rejects with INVALID_ARGUMENT before anything is sent:
   * a missing value is `undefined`, and is refused like any other.
   */
  call (method, args) {
    try {
      for (const name of Object.keys(args)) checkJson(args[name], name, ENVELOPE[name] || 0)
    } catch (e) {
      return Promise.reject(e)
    }
    return this.client.request(method, args, { checked: true })
  }

  get (traceId, key) { return this.call('state.get', { traceId, key }) }
  set (traceId, key, value) { return this.call('state.set', { traceId, key, value }) }
  delete (traceId, key) { return this.call('state.delete', { traceId, key }) }
  exists (traceId, key) { return this.call('state.exists', { traceId, key }) }

  increment (traceId, key, delta) {
    return this.call('state.increment', delta === undefined ? { traceId, key } : { traceId, key, delta })
  }

  decrement (traceId, key, delta) {
    return this.call('state.decrement', delta === undefined ? { traceId, key } : { traceId, key, delta })
  }

  compareAndSwap (traceId, key, expected, newValue) {
    return this.call('state.compareAndSwap', { traceId, key, expected, newValue })
  }

  push (traceId, key, ...items) { return this.call('state.push', { traceId, key, items }) }
  unshift (traceId, key, ...items) { return this.call('state.unshift', { traceId, key, items }) }
  pop (traceId, key) { return this.call('state.pop', { traceId, key }) }
  shift (traceId, key) { return this.call('state.shift', { traceId, key }) }
  setField (traceId, key, field, value) {
    return this.call('state.setField', { traceId, key, field, value })
  }

  deleteField (traceId, key, field) { return this.call('state.deleteField', { traceId, key, field }) }
  getGroup (groupId) { return this.call('state.getGroup', { groupId }) }
  keys (traceId) { return this.call('state.keys', { traceId }) }
  groups () { return this.call('state.groups', {}) }
  async clear (traceId) { await this.call('state.clear', { traceId }) }
  transaction (traceId, operations) { return this.call('state.transaction', { traceId, operations }) }
  batch (traceId, operations) { return this.call('state.batch', { traceId, operations }) }

  /**
   * Store `fn(current)`: an optimistic get + compareAndSwap loop. No code
   * travels to the parent. `fn` may be async and gets a private copy. After
   * UPDATE_RETRIES lost races it rejects with CONFLICT.
   */
  async update (traceId, key, fn) {
    if (typeof fn !== 'function') throw new TypeError('update needs a function')
    for (let attempt = 0; attempt < UPDATE_RETRIES; attempt++) {
      const current = await this.get(traceId, key)
      const next = await fn(clone(current))
      if (next === undefined) {
        throw new InvalidArgumentError('update: the function returned undefined, which is not JSON (return null to store null)')
      }
      checkJson(next, "the update fn's result")
      if (await this.compareAndSwap(traceId, key, current, next)) return next
      await sleep(Math.random() * UPDATE_BACKOFF_MS * 2 ** Math.min(attempt, 6))
    }
    throw new ConflictError(`update of ${JSON.stringify(key)} lost ${UPDATE_RETRIES} races in a row`)
  }
}

StateManager.prototype.atomicUpdate = util.deprecate(
  function atomicUpdate (traceId, key, fn) { return this.update(traceId, key, fn) },
  'state.atomicUpdate is deprecated; use state.update',
  'MOTIA_STATE_ATOMIC_UPDATE',
)

module.exports = { StateManager, UPDATE_RETRIES }
