'use strict'
// Errors with a stable `.code`, one class per code of the contract. The
// code-to-class map is declared once, here; the drift tests hold it to the
// core's vocabulary.

/** Every stable error code and the name of its class, in the contract's order. */
const ERROR_CLASSES = {
  INVALID_ARGUMENT: 'InvalidArgumentError',
  TYPE_MISMATCH: 'TypeMismatchError',
  CONFLICT: 'ConflictError',
  LIMIT_EXCEEDED: 'LimitExceededError',
  UNAVAILABLE: 'UnavailableError',
  NOT_FOUND: 'NotFoundError',
  TIMEOUT: 'TimeoutError',
  STEP_FAILED: 'StepFailedError',
  UPDATE_FAILED: 'UpdateFailedError',
  CURSOR_EXPIRED: 'CursorExpiredError',
  CORRUPT: 'CorruptStoreError',
  INTERNAL: 'InternalError',
}

const CODES = Object.keys(ERROR_CLASSES)

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
for (const [code, name] of Object.entries(ERROR_CLASSES)) {
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

module.exports = { CODES, ERROR_CLASSES, StateError, errorForCode, ...classes }
