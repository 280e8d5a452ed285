'use strict'
// Only JSON goes in, and frames stay within the limit: checked before
// anything is sent, on scripted streams (no parent).

const test = require('node:test')
const assert = require('node:assert/strict')
const { PassThrough } = require('node:stream')
const {
  RpcClient, StateManager, InvalidArgumentError, LimitExceededError, frameLimit, checkJson, DEFAULT_MAX_FRAME,
} = require('..')

function harness (options = {}) {
  const input = new PassThrough()
  const sent = []
  const output = { write (chunk) { for (const line of chunk.split('\n')) if (line) sent.push(JSON.parse(line)) } }
  const requests = []
  const client = new RpcClient(input, output, { onRequest: (f) => requests.push(f), ...options })
  return { input, sent, client, requests, state: new StateManager(client) }
}

const tick = () => new Promise((resolve) => setImmediate(resolve))

function nested (depth) {
  let value = []
  for (let i = 1; i < depth; i++) value = [value]
  return value
}

test('the frame limit comes from MOTIA_STEP_MAX_FRAME_BYTES; malformed means the default', () => {
  assert.equal(DEFAULT_MAX_FRAME, 16 * 1024 * 1024)
  assert.equal(frameLimit({}), DEFAULT_MAX_FRAME)
  assert.equal(frameLimit({ MOTIA_STEP_MAX_FRAME_BYTES: '4096' }), 4096)
  assert.equal(frameLimit({ MOTIA_STEP_MAX_FRAME_BYTES: ' 4096\n' }), 4096)
  for (const bad of ['', '1e6', '-1', '0', '0x100', '12.5', 'lots', '99999999999999999999']) {
    assert.equal(frameLimit({ MOTIA_STEP_MAX_FRAME_BYTES: bad }), DEFAULT_MAX_FRAME, bad)
  }
  const saved = process.env.MOTIA_STEP_MAX_FRAME_BYTES
  process.env.MOTIA_STEP_MAX_FRAME_BYTES = '1234'
  try {
    assert.equal(new RpcClient(new PassThrough(), { write () {} }).maxFrameBytes, 1234)
  } finally {
    if (saved === undefined) delete process.env.MOTIA_STEP_MAX_FRAME_BYTES
    else process.env.MOTIA_STEP_MAX_FRAME_BYTES = saved
  }
})

class Point { constructor () { this.x = 1 } }
const sparse = [1, , 3] // eslint-disable-line no-sparse-arrays

const NOT_JSON = [
  ['NaN', (s) => s.set('g', 'k', NaN), 'value'],
  ['Infinity inside', (s) => s.set('g', 'k', { a: [1, Infinity] }), 'value.a[1]'],
  ['push NaN, Infinity', (s) => s.push('g', 'k', NaN, Infinity), 'items[0]'],
  ['increment by Infinity', (s) => s.increment('g', 'k', Infinity), 'delta'],
  ['decrement by -Infinity', (s) => s.decrement('g', 'k', -Infinity), 'delta'],
  ['set without a value', (s) => s.set('g', 'k'), 'value'],
  ['undefined value', (s) => s.set('g', 'k', undefined), 'value'],
  ['undefined element', (s) => s.set('g', 'k', [1, undefined]), 'value[1]'],
  ['undefined field', (s) => s.set('g', 'k', { a: 1, b: undefined }), 'value.b'],
  ['a hole', (s) => s.set('g', 'k', sparse), 'value[1]'],
  ['compareAndSwap without newValue', (s) => s.compareAndSwap('g', 'k', 1), 'newValue'],
  ['setField without value', (s) => s.setField('g', 'k', 'f'), 'value'],
  ['setField undefined', (s) => s.setField('g', 'k', 'f', undefined), 'value'],
  ['function', (s) => s.set('g', 'k', { f () {} }), 'value.f'],
  ['symbol', (s) => s.set('g', 'k', Symbol('s')), 'value'],
  ['symbol key', (s) => s.set('g', 'k', { [Symbol('s')]: 1 }), 'value'],
  ['BigInt', (s) => s.set('g', 'k', 10n), 'value'],
  ['Date', (s) => s.set('g', 'k', { at: new Date(0) }), 'value.at'],
  ['Map', (s) => s.set('g', 'k', new Map([[1, 2]])), 'value'],
  ['class instance', (s) => s.set('g', 'k', new Point()), 'value'],
  ['boxed string', (s) => s.set('g', 'k', new String('x')), 'value'], // eslint-disable-line no-new-wrappers
  ['lone surrogate', (s) => s.set('g', 'k', ['ok', 'a\ud800b']), 'value[1]'],
  ['lone surrogate key', (s) => s.set('g', 'k', { '\udc00': 1 }), 'value'],
  ['surrogate in a key name', (s) => s.get('g', '\ud800'), 'key'],
  ['NaN as a key', (s) => s.get('g', NaN), 'key'],
  ['record value', (s) => s.transaction('g', [{ type: 'set', key: 'k', value: undefined }]), 'operations[0].value'],
  ['batch record NaN', (s) => s.batch('g', [{ type: 'increment', key: 'k', delta: NaN }]), 'operations[0].delta'],
]

for (const [name, call, where] of NOT_JSON) {
  test(`not JSON, refused before sending: ${name}`, async () => {
    const h = harness()
    await assert.rejects(call(h.state), (e) => {
      assert.ok(e instanceof InvalidArgumentError, String(e))
      assert.equal(e.code, 'INVALID_ARGUMENT')
      assert.ok(e.message.startsWith(`${where}:`), e.message)
      return true
    })
    await tick()
    assert.deepEqual(h.sent, [])
    assert.equal(h.client.pending.size, 0)
  })
}

test('a cycle is INVALID_ARGUMENT; an update fn returning undefined is refused', async () => {
  const h = harness()
  const cyclic = { a: [] }
  cyclic.a.push(cyclic)
  await assert.rejects(h.state.set('g', 'k', cyclic), (e) => e.code === 'INVALID_ARGUMENT' && /cyclic/.test(e.message))
  const shared = [1]
  h.state.set('g', 'k', { a: shared, b: shared }) // a value seen twice is not a cycle
  await tick()
  assert.deepEqual(h.sent.map((f) => f.args.value), [{ a: [1], b: [1] }])
  const p = h.state.update('g', 'k', () => undefined)
  await tick()
  h.input.write(JSON.stringify({ type: 'rpc_response', id: h.sent[1].id, result: 1 }) + '\n')
  await assert.rejects(p, (e) => e.code === 'INVALID_ARGUMENT' && /undefined/.test(e.message))
})

test('256 levels go out, 257 are LIMIT_EXCEEDED, and a 256-deep reply is read', async () => {
  const h = harness()
  h.state.set('g', 'k', nested(256))
  h.state.push('g', 'k', nested(256))
  h.state.transaction('g', [{ type: 'set', key: 'k', value: nested(256) }])
  await tick()
  assert.deepEqual(h.sent.map((f) => f.method), ['state.set', 'state.push', 'state.transaction'])
  await assert.rejects(h.state.set('g', 'k', nested(257)), (e) => e instanceof LimitExceededError && /value: nested more than 256/.test(e.message))
  await assert.rejects(h.state.push('g', 'k', nested(257)), LimitExceededError)
  assert.throws(() => checkJson(nested(100000), 'deep'), LimitExceededError)
  const p = h.state.get('g', 'k')
  await tick()
  h.input.write(JSON.stringify({ type: 'rpc_response', id: h.sent[h.sent.length - 1].id, result: nested(256) }) + '\n')
  assert.deepEqual(await p, nested(256))
})

test('a request over the frame limit rejects with LIMIT_EXCEEDED and sends nothing', async () => {
  const h = harness({ maxFrameBytes: 512 })
  await assert.rejects(h.state.set('g', 'k', 'x'.repeat(1000)), (e) => e instanceof LimitExceededError && e.code === 'LIMIT_EXCEEDED' && /frame limit/.test(e.message))
  await assert.rejects(h.state.set('g', 'k', '✓'.repeat(200)), LimitExceededError) // 600 bytes of UTF-8 in 200 chars
  assert.throws(() => h.client.notify('log', { msg: 'y'.repeat(1000) }), LimitExceededError)
  await tick()
  assert.deepEqual(h.sent, [])
  h.state.set('g', 'k', 'small')
  await tick()
  assert.deepEqual(h.sent.map((f) => f.id), [1]) // no id was used up by the refused ones
})

test('an oversized incoming frame is answered at once; a non-integer id is never read as one', async () => {
  const h = harness({ maxFrameBytes: 512 })
  const mine = h.state.get('g', 'k')
  await tick()
  h.input.write('{"type":"rpc_request","method":"invoke","id":"inv-7","args":{"data":"' + 'a'.repeat(600))
  await tick()
  await tick()
  const answer = h.sent.find((f) => f.type === 'rpc_response')
  assert.equal(answer.id, 'inv-7')
  assert.equal(answer.error.code, 'LIMIT_EXCEEDED')
  h.input.write('a'.repeat(5000) + '"}}\n')
  await tick()
  assert.deepEqual(h.requests, [])
  assert.equal(h.sent.filter((f) => f.type === 'rpc_response').length, 1)
  h.input.write('{"type":"rpc_response","id":1,"result":"' + 'b'.repeat(2000) + '"}\n')
  await assert.rejects(mine, (e) => e instanceof LimitExceededError)
  const second = h.state.get('g', 'k')
  let settled = false
  second.finally(() => { settled = true }).catch(() => {})
  await tick()
  h.input.write('{"type":"rpc_response","id":2.5,"result":"' + 'c'.repeat(2000) + '"}\n')
  await tick()
  assert.equal(settled, false)
  h.input.write('{"type":"rpc_response","id":2,"result":"fine"}\n')
  assert.equal(await second, 'fine')
})

test('a result that cannot go becomes an error reply: LIMIT_EXCEEDED or STEP_FAILED naming where', async () => {
  const h = harness({ maxFrameBytes: 4096 })
  h.client.respond('r1', 'x'.repeat(5000))
  h.client.respond('r2', { when: new Date(0) })
  h.client.respond('r3', nested(321))
  h.client.respond('r4', { n: NaN })
  h.client.respond('r5', { ok: [1, 2] })
  h.client.respond('r7', { steps: [{ result: nested(256) }] }) // stored values, wrapped
  h.client.respondError('r6', 'STEP_FAILED', 'm'.repeat(5000), 's'.repeat(5000))
  await tick()
  const byId = Object.fromEntries(h.sent.map((f) => [f.id, f]))
  assert.equal(byId.r1.error.code, 'LIMIT_EXCEEDED')
  assert.equal(byId.r2.error.code, 'STEP_FAILED')
  assert.match(byId.r2.error.message, /result\.when: a Date is not JSON/)
  assert.equal(byId.r3.error.code, 'LIMIT_EXCEEDED')
  assert.match(byId.r4.error.message, /result\.n: NaN/)
  assert.deepEqual(byId.r5.result, { ok: [1, 2] })
  assert.deepEqual(byId.r7.result, { steps: [{ result: nested(256) }] })
  assert.equal(byId.r6.error.code, 'STEP_FAILED')
})

test('a frame that cannot be decoded is still answered when its id can be read', async () => {
  const h = harness()
  const mine = h.state.get('g', 'k')
  await tick()
  h.input.write('{"type":"rpc_response","id":1,"result":tru}\n{"type":"rpc_request","id":"q","method":"x","args":[}\n')
  await assert.rejects(mine, (e) => e.code === 'INVALID_ARGUMENT')
  await tick()
  const answer = h.sent.find((f) => f.type === 'rpc_response')
  assert.equal(answer.id, 'q')
  assert.equal(answer.error.code, 'INVALID_ARGUMENT')
})

test("a record's limits are left to the parent, which reports them in the result", async () => {
  const h = harness()
  h.state.transaction('g', [{ type: 'set', key: 'k', value: nested(257) }])
  h.state.batch('g', [{ type: 'push', key: 'k', items: [nested(300)] }])
  await tick()
  assert.deepEqual(h.sent.map((f) => f.method), ['state.transaction', 'state.batch'])
  await assert.rejects(h.state.batch('g', [{ type: 'set', key: 'k', value: NaN }]), InvalidArgumentError)
})

test("an update fn's result that is not JSON is named, and no compareAndSwap goes out", async () => {
  const h = harness()
  const p = h.state.update('g', 'k', () => ({ at: new Date(0) }))
  await tick()
  h.input.write(JSON.stringify({ type: 'rpc_response', id: h.sent[0].id, result: 1 }) + '\n')
  await assert.rejects(p, (e) => e.code === 'INVALID_ARGUMENT' && e.message.startsWith("the update fn's result.at: a Date"))
  await tick()
  assert.deepEqual(h.sent.map((f) => f.method), ['state.get'])
})
