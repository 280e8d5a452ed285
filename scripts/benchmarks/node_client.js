'use strict'
// The Node client's own cost per sequential request, in one process: the
// reply is already in the pipe when the request is made, so no other
// process and no scheduler is involved, only what the client does (encode,
// write, spin-read, decode, resolve) plus writing the reply.
//
//   node scripts/benchmarks/node_client.js [path/to/rpc.js] [requests]

const fs = require('fs')
const net = require('net')
const os = require('os')
const path = require('path')
const { execFileSync } = require('child_process')
const { PassThrough } = require('stream')

const clientPath = path.resolve(process.argv[2] || path.join(__dirname, '..', '..', 'bindings', 'node', 'lib', 'rpc.js'))
const N = Number(process.argv[3] || 200000)
const { RpcClient } = require(clientPath)

/** A FIFO opened non-blocking at both ends. */
function fifo (dir, name) {
  const file = path.join(dir, name)
  execFileSync('mkfifo', [file])
  const r = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK)
  const w = fs.openSync(file, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK)
  return { r, w }
}

async function main () {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'motia-node-client-'))
  const inp = fifo(dir, 'in')
  const out = fifo(dir, 'out')
  const output = new net.Socket({ fd: out.w, readable: false, writable: true })
  const client = new RpcClient(new PassThrough(), output, { inputFd: inp.r, outputFd: out.w, spinMicros: 1000 })
  const sink = Buffer.alloc(1 << 20)
  const drain = () => {
    try { while (fs.readSync(out.r, sink) > 0); } catch (e) { if (e.code !== 'EAGAIN') throw e }
  }
  const start = process.hrtime.bigint()
  const cpu = process.cpuUsage()
  for (let i = 0; i < N; i++) {
    fs.writeSync(inp.w, `{"type":"rpc_response","id":${i + 1},"result":${i}}\n`)
    await client.request('state.increment', { traceId: 'bench', key: 'seq' })
    if (i % 500 === 0) drain()
  }
  const used = process.cpuUsage(cpu)
  const wall = Number(process.hrtime.bigint() - start) / N / 1000
  console.log(`${clientPath}: ${N} requests, ${((used.user + used.system) / N).toFixed(2)} us CPU and ${wall.toFixed(2)} us wall per request (spins ${client.spins}, replies caught ${client.hits})`)
  fs.rmSync(dir, { recursive: true })
  process.exit(0)
}

main()
