#!/usr/bin/env node
'use strict'
// motia-state's Node runner: `node run_step.js <step file>`.
require('./lib/runner').main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e) => { process.stderr.write(`${e && e.stack ? e.stack : e}\n`); process.exitCode = 1 },
)
