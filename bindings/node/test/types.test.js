'use strict'
// index.d.ts stays in step with the code: every declared StateManager method
// exists, and every public method is declared.

const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const path = require('node:path')
const binding = require('..')

const dts = fs.readFileSync(path.join(__dirname, '..', 'index.d.ts'), 'utf8')

function declaredMethods (className) {
  const start = dts.indexOf(`export class ${className} `)
  assert.ok(start >= 0, `index.d.ts declares ${className}`)
  const body = dts.slice(dts.indexOf('{', start) + 1, dts.indexOf('\n}', start))
  return [...body.matchAll(/^\s+(\w+)\s*(?:<[^>]*>)?\s*\(/gm)].map((m) => m[1]).filter((n) => n !== 'constructor')
}

test('every StateManager method is declared, and nothing else', () => {
  const declared = new Set(declaredMethods('StateManager'))
  const actual = new Set(Object.getOwnPropertyNames(binding.StateManager.prototype).filter((n) => n !== 'constructor' && n !== 'call'))
  assert.deepEqual([...declared].sort(), [...actual].sort())
})

test('every exported value is declared', () => {
  for (const name of Object.keys(binding)) {
    assert.match(dts, new RegExp(`export (class|const|function) ${name}\\b`), `${name} is not declared in index.d.ts`)
  }
})
