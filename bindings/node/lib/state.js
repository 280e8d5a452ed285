'use strict'
// ctx.state inside a Node step: every operation is one RPC call to the
// parent, which owns the state. Methods return promises, camelCase names.

const util = require('util')
const { ConflictError } = require('./errors')

/** Optimistic `update`: attempts before CONFLICT, and the backoff base (ms). */
const UPDATE_RETRIES = 50
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

  call (method, args) {
    return this.client.request(method, args)
  }

  get (traceId, key) { return this.call('state.get', { traceId, key }) }
  set (traceId, key, value) { return this.call('state.set', { traceId, key, value: value === undefined ? null : value }) }
  delete (traceId, key) { return this.call('state.delete', { traceId, key }) }
  exists (traceId, key) { return this.call('state.exists', { traceId, key }) }

  increment (traceId, key, delta) {
    return this.call('state.increment', delta === undefined ? { traceId, key } : { traceId, key, delta })
  }

  decrement (traceId, key, delta) {
    return this.call('state.decrement', delta === undefined ? { traceId, key } : { traceId, key, delta })
  }

  compareAndSwap (traceId, key, expected, newValue) {
    return this.call('state.compareAndSwap', {
      traceId,
      key,
      expected: expected === undefined ? null : expected,
      newValue: newValue === undefined ? null : newValue,
    })
  }

  push (traceId, key, ...items) { return this.call('state.push', { traceId, key, items }) }
  unshift (traceId, key, ...items) { return this.call('state.unshift', { traceId, key, items }) }
  pop (traceId, key) { return this.call('state.pop', { traceId, key }) }
  shift (traceId, key) { return this.call('state.shift', { traceId, key }) }
  setField (traceId, key, field, value) {
    return this.call('state.setField', { traceId, key, field, value: value === undefined ? null : value })
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
      const stored = next === undefined ? null : next
      if (await this.compareAndSwap(traceId, key, current, stored)) return stored
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
