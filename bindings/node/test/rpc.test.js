'use strict'
// The RPC client and the state manager on scripted streams (no parent).

const test = require('node:test')
const assert = require('node:assert/strict')
const { PassThrough } = require('node:stream')
const { RpcClient, StateManager, StateError, TypeMismatchError, ConflictError, CODES } = require('..')

/** A client wired to a fake parent: `sent` collects frames; `reply` answers them. */
function harness (options = {}) {
  const input = new PassThrough()
  const sent = []
  const writes = []
  const output = {
    write (chunk) {
      writes.push(chunk)
      for (const line of chunk.split('\n')) if (line) sent.push(JSON.parse(line))
    },
  }
  const requests = []
  const client = new RpcClient(input, output, { onRequest: (f) => requests.push(f), ...options })
  const reply = (frame) => input.write(JSON.stringify(frame) + '\n')
  return { input, sent, writes, client, requests, reply }
}

const tick = () => new Promise((resolve) => setImmediate(resolve))

test('a request goes out as one frame and resolves with its reply', async () => {
  const h = harness()
  const p = h.client.request('state.get', { traceId: 't', key: 'k' })
  await tick()
  assert.deepEqual(h.sent, [{ type: 'rpc_request', id: 1, method: 'state.get', args: { traceId: 't', key: 'k' } }])
  h.reply({ type: 'rpc_response', id: 1, result: { a: [1, 2] } })
  assert.deepEqual(await p, { a: [1, 2] })
})

test('odd frames from the parent are survived and lose no reply', async () => {
  const h = harness()
  const p = h.client.request('state.get', { traceId: 't', key: 'k' })
  await tick()
  const odd = [
    '{"type":"rpc_response","id":[1]}', '{"type":"rpc_response","id":{"a":1},"result":2}',
    '{"type":"rpc_response","id":1.5,"error":"x"}', '{"type":"rpc_response","error":[1,2]}',
    '{"type":"rpc_request","id":[],"method":{"m":1},"args":7}', '{"type":7}', '[1,2]', 'null', '42',
    '{"type":"rpc_request"',
  ]
  h.input.write(Buffer.concat([Buffer.from(odd.join('\n') + '\n'), Buffer.from([0xff, 0xfe, 0x0a])]))
  h.reply({ type: 'rpc_response', id: 1, result: 'mine' })
  assert.equal(await p, 'mine')
})

test('an error reply rejects with a StateError carrying its code', async () => {
  const h = harness()
  const p = h.client.request('state.increment', { traceId: 't', key: 'k' })
  await tick()
  h.reply({ type: 'rpc_response', id: 1, error: { code: 'TYPE_MISMATCH', message: 'not a number' } })
  await assert.rejects(p, (e) => e instanceof TypeMismatchError && e instanceof StateError && e.code === 'TYPE_MISMATCH' && e.message === 'not a number')
})

test('pipelined requests share one write and replies may come in any order', async () => {
  const h = harness()
  const ps = [1, 2, 3].map((i) => h.client.request('state.increment', { traceId: 't', key: `k${i}` }))
  await tick()
  assert.equal(h.writes.length, 1)
  assert.deepEqual(h.sent.map((f) => f.id), [1, 2, 3])
  h.reply({ type: 'rpc_response', id: 3, result: 30 })
  h.reply({ type: 'rpc_response', id: 1, result: 10 })
  h.reply({ type: 'rpc_response', id: 2, result: 20 })
  assert.deepEqual(await Promise.all(ps), [10, 20, 30])
})

test('a multibyte character split across reads keeps its frame whole', async () => {
  const h = harness()
  const p = h.client.request('state.get', {})
  await tick()
  const bytes = Buffer.from(JSON.stringify({ type: 'rpc_response', id: 1, result: 'héllo ✓ 😀' }) + '\n')
  const cut = bytes.indexOf(Buffer.from('😀')) + 2
  h.input.write(bytes.subarray(0, cut))
  await tick()
  h.input.write(bytes.subarray(cut))
  assert.equal(await p, 'héllo ✓ 😀')
})

test('garbage lines, oversized lines and replies to nothing are dropped; later frames still work', async () => {
  const h = harness({ maxFrameBytes: 64 })
  const p = h.client.request('state.get', {})
  await tick()
  h.input.write('not json\n')
  h.input.write('{"type":"rpc_response","id":99,"result":1}\n')
  h.input.write('x'.repeat(50))
  h.input.write('y'.repeat(50) + '\n') // 100 bytes: over the limit
  h.reply({ type: 'rpc_response', id: 1, result: 'ok' })
  assert.equal(await p, 'ok')
  assert.equal(h.client.buffered, 0)
})

test('requests from the parent reach onRequest', async () => {
  const h = harness()
  h.reply({ type: 'rpc_request', id: 'i1', method: 'invoke', args: { data: 1 } })
  await tick()
  assert.deepEqual(h.requests, [{ type: 'rpc_request', id: 'i1', method: 'invoke', args: { data: 1 } }])
})

test('the end of input rejects every pending request with UNAVAILABLE', async () => {
  const h = harness()
  const p = h.client.request('state.get', {})
  await tick()
  h.input.end()
  await assert.rejects(p, (e) => e.code === 'UNAVAILABLE')
  await assert.rejects(h.client.request('state.get', {}), (e) => e.code === 'UNAVAILABLE')
})

test('args that are not JSON reject with INVALID_ARGUMENT and send nothing', async () => {
  const h = harness()
  const cyclic = {}
  cyclic.self = cyclic
  await assert.rejects(h.client.request('state.set', { value: cyclic }), (e) => e.code === 'INVALID_ARGUMENT')
  await assert.rejects(h.client.request('state.set', { value: 10n }), (e) => e.code === 'INVALID_ARGUMENT')
  await tick()
  assert.deepEqual(h.sent, [])
})

test('every state method sends the method and args of the protocol', async () => {
  const h = harness()
  const s = new StateManager(h.client)
  const calls = [
    [() => s.get('t', 'k'), 'state.get', { traceId: 't', key: 'k' }],
    [() => s.set('t', 'k', 0), 'state.set', { traceId: 't', key: 'k', value: 0 }],
    [() => s.delete('t', 'k'), 'state.delete', { traceId: 't', key: 'k' }],
    [() => s.exists('t', 'k'), 'state.exists', { traceId: 't', key: 'k' }],
    [() => s.increment('t', 'k'), 'state.increment', { traceId: 't', key: 'k' }],
    [() => s.decrement('t', 'k', 2), 'state.decrement', { traceId: 't', key: 'k', delta: 2 }],
    [() => s.compareAndSwap('t', 'k', null, 1), 'state.compareAndSwap', { traceId: 't', key: 'k', expected: null, newValue: 1 }],
    [() => s.push('t', 'k', 1, 2), 'state.push', { traceId: 't', key: 'k', items: [1, 2] }],
    [() => s.unshift('t', 'k', 0), 'state.unshift', { traceId: 't', key: 'k', items: [0] }],
    [() => s.pop('t', 'k'), 'state.pop', { traceId: 't', key: 'k' }],
    [() => s.shift('t', 'k'), 'state.shift', { traceId: 't', key: 'k' }],
    [() => s.setField('t', 'k', 'f', 1), 'state.setField', { traceId: 't', key: 'k', field: 'f', value: 1 }],
    [() => s.deleteField('t', 'k', 'f'), 'state.deleteField', { traceId: 't', key: 'k', field: 'f' }],
    [() => s.getGroup('t'), 'state.getGroup', { groupId: 't' }],
    [() => s.keys('t'), 'state.keys', { traceId: 't' }],
    [() => s.groups(), 'state.groups', {}],
    [() => s.clear('t'), 'state.clear', { traceId: 't' }],
    [() => s.transaction('t', []), 'state.transaction', { traceId: 't', operations: [] }],
    [() => s.batch('t', []), 'state.batch', { traceId: 't', operations: [] }],
  ]
  const promises = calls.map(([fn]) => fn())
  await tick()
  assert.deepEqual(h.sent.map((f) => [f.method, f.args]), calls.map(([, m, a]) => [m, a]))
  for (const f of h.sent) h.reply({ type: 'rpc_response', id: f.id, result: null })
  await Promise.all(promises)
})

test('update retries its compareAndSwap until it wins, then returns the stored value', async () => {
  const h = harness()
  const s = new StateManager(h.client)
  const seen = []
  const p = s.update('t', 'k', (v) => { seen.push(v); return (v || 0) + 1 })
  let answered = 0
  const answer = async (result) => {
    while (h.sent.length === answered) await new Promise((resolve) => setTimeout(resolve, 1))
    const f = h.sent[answered++]
    h.reply({ type: 'rpc_response', id: f.id, result })
  }
  await answer(1) // get
  await answer(false) // lost the race
  await answer(5) // get again
  await answer(true) // won
  assert.equal(await p, 6)
  assert.deepEqual(seen, [1, 5])
  assert.deepEqual(h.sent.filter((f) => f.method === 'state.compareAndSwap').map((f) => f.args.newValue), [2, 6])
})

test('update gives up with CONFLICT after its retries', async () => {
  const h = harness()
  const s = new StateManager(h.client)
  let settled = false
  const outcome = s.update('t', 'k', (v) => v).then(() => null, (e) => e).finally(() => { settled = true })
  let swaps = 0
  while (!settled) { // the parent loses every race for it
    await new Promise((resolve) => setTimeout(resolve, 1))
    for (const f of h.sent.splice(0)) {
      if (f.method === 'state.compareAndSwap') swaps++
      h.reply({ type: 'rpc_response', id: f.id, result: f.method === 'state.get' ? 1 : false })
    }
  }
  const e = await outcome
  assert.ok(e instanceof ConflictError && e.code === 'CONFLICT', String(e))
  assert.equal(swaps, require('..').UPDATE_RETRIES)
  assert.equal(require('..').UPDATE_RETRIES, 64)
})

test('atomicUpdate still works and warns once that it is deprecated', async () => {
  const h = harness()
  const s = new StateManager(h.client)
  const warnings = []
  const onWarning = (w) => { if (w.code === 'MOTIA_STATE_ATOMIC_UPDATE') warnings.push(w) }
  process.on('warning', onWarning)
  const p = s.atomicUpdate('t', 'k', () => 'x')
  await tick()
  h.reply({ type: 'rpc_response', id: 1, result: null })
  await tick()
  h.reply({ type: 'rpc_response', id: 2, result: true })
  assert.equal(await p, 'x')
  await tick()
  process.off('warning', onWarning)
  assert.equal(warnings.length, 1)
  assert.equal(warnings[0].name, 'DeprecationWarning')
  assert.match(warnings[0].message, /atomicUpdate is deprecated/)
})

test('the error classes cover every code', () => {
  assert.equal(CODES.length, 12)
  for (const code of CODES) {
    const e = require('..').errorForCode(code, 'm')
    assert.equal(e.code, code)
    assert.ok(e instanceof StateError)
    assert.equal(e.constructor, require('..')[require('..').ERROR_CLASSES[code]])
  }
  assert.equal(require('..').errorForCode('CORRUPT', 'm').name, 'CorruptStoreError')
  assert.equal(require('..').errorForCode('WHAT', 'm').code, 'WHAT')
})

// -- the spin: a lone request polls the pipe for its reply before yielding --

const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { execFileSync } = require('node:child_process')
const { spinMicros } = require('..')

/** A FIFO opened non-blocking for reading (as libuv leaves fd 0) and its writing end. */
function fifo () {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'motia-spin-'))
  const file = path.join(dir, 'pipe')
  execFileSync('mkfifo', [file])
  const readFd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK)
  const writeFd = fs.openSync(file, fs.constants.O_WRONLY)
  return {
    readFd,
    writeFd,
    close () {
      fs.closeSync(readFd)
      fs.closeSync(writeFd)
      fs.rmSync(dir, { recursive: true })
    },
  }
}

test('a reply already in the pipe is read by the spin and resolves at once', async () => {
  const p = fifo()
  try {
    const h = harness({ inputFd: p.readFd, spinMicros: 200000 })
    fs.writeSync(p.writeFd, '{"type":"rpc_response","id":1,"result":41}\n')
    let settled = false
    const reply = h.client.request('state.increment', { traceId: 't', key: 'k' }).then((v) => { settled = true; return v })
    assert.equal(h.writes.length, 1, 'sent at once, not on the next tick')
    await Promise.resolve()
    assert.equal(settled, true, 'resolved before any event-loop turn')
    assert.equal(await reply, 41)
    assert.deepEqual([h.client.spins, h.client.hits, h.client.skip], [1, 1, 0])
  } finally {
    p.close()
  }
})

test('a spin that finds nothing backs off, and a hit resets it', async () => {
  const p = fifo()
  try {
    const h = harness({ inputFd: p.readFd, spinMicros: 500 })
    const first = h.client.request('state.get', { traceId: 't', key: 'k' })
    assert.deepEqual([h.client.spins, h.client.hits, h.client.skip], [1, 0, 2])
    h.client.request('state.get', { traceId: 't', key: 'j' }) // not alone: no spin, no skip used
    assert.equal(h.client.skip, 2)
    fs.writeSync(p.writeFd, '{"type":"rpc_response","id":1,"result":1}\n{"type":"rpc_response","id":2,"result":2}\n')
    h.client.spin() // read what is there (the stream would on the next loop turn)
    assert.equal(h.client.skip, 1, 'a skipped spin reads nothing')
    h.client.spin()
    h.client.spin()
    assert.equal(await first, 1)
    assert.deepEqual([h.client.spins, h.client.hits, h.client.skip], [2, 1, 0])
  } finally {
    p.close()
  }
})

test('no spin without an fd, and none when the budget is 0', () => {
  const h = harness()
  h.client.request('state.get', { traceId: 't', key: 'k' })
  assert.equal(h.client.spins, 0)
  const p = fifo()
  try {
    const off = harness({ inputFd: p.readFd, spinMicros: 0 })
    off.client.request('state.get', { traceId: 't', key: 'k' })
    assert.equal(off.client.spins, 0)
  } finally {
    p.close()
  }
})

test('MOTIA_STEP_SPIN_US sets the budget; 0, one CPU or nonsense are handled', () => {
  assert.equal(spinMicros({}, 2), 50)
  assert.equal(spinMicros({ MOTIA_STEP_SPIN_US: '120' }, 2), 120)
  assert.equal(spinMicros({ MOTIA_STEP_SPIN_US: '0' }, 2), 0)
  assert.equal(spinMicros({ MOTIA_STEP_SPIN_US: 'lots' }, 2), 50)
  assert.equal(spinMicros({ MOTIA_STEP_SPIN_US: 'NaN' }, 2), 50)
  assert.equal(spinMicros({ MOTIA_STEP_SPIN_US: 'Infinity' }, 2), 10000)
  assert.equal(spinMicros({ MOTIA_STEP_SPIN_US: '1e9' }, 2), 10000)
  assert.equal(spinMicros({ MOTIA_STEP_SPIN_US: '50' }, 1), 0)
})

/** Everything readable now from a non-blocking fd, as text. */
function drain (fd) {
  const buffer = Buffer.alloc(1 << 20)
  let text = ''
  for (;;) {
    let n
    try {
      n = fs.readSync(fd, buffer, 0, buffer.length, null)
    } catch (e) {
      if (e.code === 'EAGAIN') return text
      throw e
    }
    if (n === 0) return text
    text += buffer.toString('utf8', 0, n)
  }
}

test('a lone request is written straight to outputFd, bypassing the stream', async () => {
  const input = fifo()
  const output = fifo()
  try {
    const h = harness({ inputFd: input.readFd, outputFd: output.writeFd, spinMicros: 200000 })
    fs.writeSync(input.writeFd, '{"type":"rpc_response","id":1,"result":"é"}\n')
    const reply = h.client.request('state.get', { traceId: 't', key: 'ключ' })
    assert.equal(h.writes.length, 0, 'nothing through the stream')
    assert.deepEqual(JSON.parse(drain(output.readFd)), { type: 'rpc_request', id: 1, method: 'state.get', args: { traceId: 't', key: 'ключ' } })
    assert.equal(await reply, 'é')
  } finally {
    input.close()
    output.close()
  }
})

test('a lone request goes through the stream while it holds bytes, or when the fd is full', async () => {
  const input = fifo()
  const output = fifo()
  try {
    const h = harness({ inputFd: input.readFd, outputFd: output.writeFd, spinMicros: 1 })
    h.client.output.writableLength = 5 // bytes still queued in the stream: the frame must follow them
    h.client.request('state.get', { traceId: 't', key: 'a' })
    assert.equal(h.writes.length, 1)
    assert.equal(drain(output.readFd), '')
    h.client.pending.clear()

    // A full pipe (EAGAIN): the whole frame goes to the stream, which waits for room.
    h.client.output.writableLength = 0
    const full = fs.openSync(`/proc/self/fd/${output.writeFd}`, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK)
    const chunk = Buffer.alloc(65536, 0x20)
    let filled = false
    while (!filled) {
      try { fs.writeSync(full, chunk) } catch (e) { if (e.code !== 'EAGAIN') throw e; filled = true }
    }
    const h2 = harness({ inputFd: input.readFd, outputFd: full, spinMicros: 1 })
    h2.client.request('state.get', { traceId: 't', key: 'b' })
    assert.equal(h2.writes.length, 1, 'the frame went to the stream')
    assert.deepEqual(h2.sent.map((f) => f.args.key), ['b'])
    fs.closeSync(full)
  } finally {
    input.close()
    output.close()
  }
})

test('replies read by the spin that end mid-frame are completed by the stream', async () => {
  const p = fifo()
  try {
    const h = harness({ inputFd: p.readFd, spinMicros: 200000 })
    fs.writeSync(p.writeFd, '{"type":"rpc_response","id":1,"res')
    const reply = h.client.request('state.get', { traceId: 't', key: 'k' })
    assert.equal(h.client.hits, 1)
    h.client.spinBuffer.fill(0x7b) // the spin's buffer is reused: the partial frame must not live in it
    h.input.write('ult":"whole"}\n')
    assert.equal(await reply, 'whole')
  } finally {
    p.close()
  }
})

test('a spin leaves Error.stackTraceLimit as it was, and the errors it delivers keep their stack', async () => {
  const p = fifo()
  const saved = Error.stackTraceLimit
  Error.stackTraceLimit = 17
  try {
    const miss = harness({ inputFd: p.readFd, spinMicros: 300 })
    miss.client.request('state.get', { traceId: 't', key: 'k' })
    assert.deepEqual([miss.client.spins, miss.client.hits], [1, 0])
    assert.equal(Error.stackTraceLimit, 17)
    const h = harness({ inputFd: p.readFd, spinMicros: 200000 })
    fs.writeSync(p.writeFd, '{"type":"rpc_response","id":1,"error":{"code":"TYPE_MISMATCH","message":"no"}}\n')
    const failed = h.client.request('state.increment', { traceId: 't', key: 'k' })
    assert.equal(h.client.hits, 1)
    await assert.rejects(failed, (e) => e instanceof TypeMismatchError && /\n\s+at /.test(e.stack))
    assert.equal(Error.stackTraceLimit, 17)
  } finally {
    Error.stackTraceLimit = saved
    p.close()
  }
})

test('replies read in the parent\'s shape settle exactly as the whole frame says', async () => {
  const h = harness()
  const calls = Array.from({ length: 9 }, () => h.client.request('state.get', { traceId: 't', key: 'k' }))
  await tick()
  const lines = [
    '{"type":"rpc_response","id":1,"result":7}',
    '{"type":"rpc_response","id":2,"result":{"a":[1,"\u00e9"]}}',
    '{"type":"rpc_response","id":3,"result":null}',
    '{"type":"rpc_response","id":4,"result":1,"error":{"code":"NOT_FOUND","message":"gone"}}', // not a lone result: the error counts
    '{"type":"rpc_response","id":5,"error":{"code":"CONFLICT","message":"lost"}}',
    '{"type":"rpc_response","id":6,"result":"x"}\r',
    '{"type":"rpc_response","id":07,"result":1}', // no JSON, and no id to read: dropped
    '{"type":"rpc_response","id":7,"result":[1,}', // no JSON, but its id ends the call
    '{"type":"rpc_response","id":70,"result":1}', // a reply to nothing
    '{"type":"rpc_response","id":8,"result":"y"} ',
  ]
  h.input.write(lines.join('\n') + '\n')
  h.reply({ type: 'rpc_response', id: 9, result: 9 })
  const settled = await Promise.allSettled(calls)
  assert.deepEqual(settled.map((s) => (s.status === 'fulfilled' ? s.value : s.reason.code)), [
    7, { a: [1, '\u00e9'] }, null, 'NOT_FOUND', 'CONFLICT', 'x', 'INVALID_ARGUMENT', 'y', 9,
  ])
  assert.equal(h.client.pending.size, 0)
})

test('integer results read from the reply\'s text equal what JSON.parse makes of them', async () => {
  const h = harness()
  const results = ['0', '-0', '-5', '42', '999999999999999', '1234567890123456789', '1.5', '1e3', '-1.25e-2', '"7"', ' 8 ']
  const calls = results.map(() => h.client.request('state.increment', { traceId: 't', key: 'k' }))
  await tick()
  h.input.write(results.map((r, i) => `{"type":"rpc_response","id":${i + 1},"result":${r}}`).join('\n') + '\n')
  const values = await Promise.all(calls)
  assert.deepEqual(values, results.map((r) => JSON.parse(r)))
  assert.ok(Object.is(values[1], -0))
  const bad = h.client.request('state.increment', { traceId: 't', key: 'k' })
  await tick()
  h.input.write(`{"type":"rpc_response","id":${results.length + 1},"result":01}\n`)
  await assert.rejects(bad, (e) => e.code === 'INVALID_ARGUMENT')
})
