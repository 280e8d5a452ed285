'use strict'
// Runs one probe on Motia's published core (installed by peer.sh into a
// scratch folder) and prints its figure as JSON on stdout.
//
//   node motia_driver.js SCRATCH cold STEP N          calls/s, a new process per call
//   node motia_driver.js SCRATCH state STEP N         the step's own state writes/s
//   node motia_driver.js SCRATCH fileset ENTRIES REPS DIR   seconds per set with ENTRIES in the store
//
// Motia's analytics client is replaced by a no-op before the core loads,
// so that no probe sends anything over the network.

const path = require('path')
const fs = require('fs')

const [scratch, probe, ...rest] = process.argv.slice(2)
const from = { paths: [scratch] }
const amplitude = require.resolve('@amplitude/analytics-node', from)
require.cache[amplitude] = { id: amplitude, filename: amplitude, loaded: true, exports: { track () {}, init () {}, flush () {} } }
const core = path.join(path.dirname(require.resolve('@motiadev/core/package.json', from)), 'dist', 'src')
const { callStepFile } = require(path.join(core, 'call-step-file'))
const { MemoryStateAdapter } = require(path.join(core, 'state', 'adapters', 'memory-state-adapter'))
const { FileStateAdapter } = require(path.join(core, 'state', 'adapters', 'default-state-adapter'))

const quiet = { child () { return quiet }, log () {}, info () {}, error (m) { process.stderr.write(String(m)) }, debug () {}, warn () {} }

function call (file, data, state) {
  const step = {
    filePath: path.resolve(file),
    version: '1',
    config: { type: 'event', name: path.basename(file), subscribes: ['peer'], emits: [], flows: ['peer'] },
  }
  return callStepFile({
    step,
    printer: { printInvalidEmit () {} },
    eventManager: { emit: async () => {} },
    state,
    traceId: 'peer',
    data,
    logger: quiet,
    lockedData: { getStreams: () => ({}) },
    contextInFirstArg: false,
  })
}

async function main () {
  if (probe === 'cold') {
    const [file, n] = [rest[0], Number(rest[1])]
    const state = new MemoryStateAdapter()
    await call(file, {}, state) // the first start also warms the disk cache
    const start = performance.now()
    for (let i = 0; i < n; i++) await call(file, {}, state)
    return { rate: n / ((performance.now() - start) / 1000) }
  }
  if (probe === 'state') {
    const [file, n] = [rest[0], Number(rest[1])]
    const result = await call(file, { n }, new MemoryStateAdapter())
    return { rate: result.rate }
  }
  if (probe === 'fileset') {
    const [entries, reps, dir] = [Number(rest[0]), Number(rest[1]), rest[2]]
    const store = new FileStateAdapter({ filePath: dir })
    store.init()
    const data = {}
    for (let i = 0; i < entries; i++) data[`peer:k${i}`] = JSON.stringify({ i, pad: 'x'.repeat(32) })
    fs.writeFileSync(store.filePath, JSON.stringify(data, null, 2))
    await store.set('peer', 'probe', 0)
    const start = performance.now()
    for (let i = 0; i < reps; i++) await store.set('peer', 'probe', i)
    return { seconds: (performance.now() - start) / 1000 / reps }
  }
  throw new Error(`unknown probe ${probe}`)
}

main().then(
  (out) => { process.stdout.write(JSON.stringify(out) + '\n'); process.exit(0) },
  (e) => { process.stderr.write(`${e && e.stack ? e.stack : e}\n`); process.exit(1) },
)
