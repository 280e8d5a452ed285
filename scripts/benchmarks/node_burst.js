'use strict'
// The Node client's own cost per call of a burst, in one process: 2,000
// increments through ctx.state's StateManager (check, encode, queue, one
// write per slice to /dev/null), then their replies fed in reads of 256
// lines as the parent sends them (split, decode, settle). No other process
// and no pipe is involved. Prints the median of 40 bursts after 20 to warm up.
//
//   node scripts/benchmarks/node_burst.js [path/to/bindings/node/lib]

const fs = require('fs')
const path = require('path')
const { PassThrough, Writable } = require('stream')

const lib = path.resolve(process.argv[2] || path.join(__dirname, '..', '..', 'bindings', 'node', 'lib'))
const { RpcClient } = require(path.join(lib, 'rpc.js'))
const { StateManager } = require(path.join(lib, 'state.js'))
const N = 2000

const output = new Writable({ write (chunk, encoding, callback) { callback() } })
const client = new RpcClient(new PassThrough(), output, { outputFd: fs.openSync('/dev/null', 'w'), spinMicros: 0 })
const state = new StateManager(client)

async function burst () {
  const first = client.nextId
  const t0 = process.hrtime.bigint()
  const all = Promise.all(Array.from({ length: N }, () => state.increment('bench', 'conc')))
  const t1 = process.hrtime.bigint()
  await new Promise((resolve) => setImmediate(resolve)) // the last slice's flush
  const t2 = process.hrtime.bigint()
  for (let i = 0; i < N; i += 256) {
    const lines = []
    for (let j = i; j < Math.min(N, i + 256); j++) lines.push(`{"type":"rpc_response","id":${first + j},"result":${j}}`)
    client.feed(Buffer.from(lines.join('\n') + '\n'))
  }
  await all
  const t3 = process.hrtime.bigint()
  return [Number(t1 - t0) / N / 1000, Number(t3 - t2) / N / 1000]
}

async function main () {
  const runs = []
  for (let r = 0; r < 60; r++) runs.push(await burst())
  const median = (values) => values.sort((a, b) => a - b)[values.length >> 1]
  const timed = runs.slice(20)
  const send = median(timed.map((r) => r[0]))
  const replies = median(timed.map((r) => r[1]))
  console.log(`${lib}: ${send.toFixed(2)} us to send and ${replies.toFixed(2)} us to settle per call (median of ${timed.length} bursts of ${N})`)
}

main()
