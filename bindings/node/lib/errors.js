'use strict'
// Errors with a stable `.code`, one class per code of the contract.

const CODES = [
  'INVALID_ARGUMENT',
  'TYPE_MISMATCH',
  'CONFLICT',
  'LIMIT_EXCEEDED',
  'UNAVAILABLE',
  'NOT_FOUND',
  'TIMEOUT',
  'STEP_FAILED',
  'INTERNAL',
]

class StateError extends Error {
  constructor (message, code = 'INTERNAL', details = undefined) {
    super(message)
    this.name = 'StateError'
    this.code = code
    if (details !== undefined) this.details = details
  }
}

const byCode = {}
const classes = {}
for (const code of CODES) {
  // INVALID_ARGUMENT -> InvalidArgumentError
  const name = code.toLowerCase().replace(/(^|_)([a-z])/g, (_, __, c) => c.toUpperCase()) + 'Error'
  const cls = {
    [name]: class extends StateError {
      constructor (message, details) {
        super(message, code, details)
        this.name = name
      }
    },
  }[name]
  byCode[code] = cls
  classes[name] = cls
}

/** The error for a wire `{code, message}` (unknown codes become INTERNAL). */
function errorForCode (code, message, details) {
  const cls = byCode[code]
  if (cls) return new cls(message, details)
  const e = new classes.InternalError(message, details)
  e.code = typeof code === 'string' ? code : 'INTERNAL'
  return e
}

module.exports = { CODES, StateError, errorForCode, ...classes }
