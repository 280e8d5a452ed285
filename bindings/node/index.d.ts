// Type declarations for motia-state's Node binding.

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue }

export type ErrorCode =
  | 'INVALID_ARGUMENT'
  | 'TYPE_MISMATCH'
  | 'CONFLICT'
  | 'LIMIT_EXCEEDED'
  | 'UNAVAILABLE'
  | 'NOT_FOUND'
  | 'TIMEOUT'
  | 'STEP_FAILED'
  | 'UPDATE_FAILED'
  | 'CURSOR_EXPIRED'
  | 'CORRUPT'
  | 'INTERNAL'

export const CODES: ErrorCode[]
/** Each code's class name (`CORRUPT` is `CorruptStoreError`). */
export const ERROR_CLASSES: { [code in ErrorCode]: string }

/** Every error the binding rejects with on purpose; branch on `.code`. */
export class StateError extends Error {
  constructor (message: string, code?: ErrorCode, details?: unknown)
  code: ErrorCode
  details?: unknown
}
export class InvalidArgumentError extends StateError {}
export class TypeMismatchError extends StateError {}
export class ConflictError extends StateError {}
export class LimitExceededError extends StateError {}
export class UnavailableError extends StateError {}
export class NotFoundError extends StateError {}
export class TimeoutError extends StateError {}
export class StepFailedError extends StateError {}
/** An update fn raised inside a transaction or batch. */
export class UpdateFailedError extends StateError {}
/** A change-feed cursor is older than what the feed retains. */
export class CursorExpiredError extends StateError {}
/** Stored data is damaged; not retryable (repair or restore). */
export class CorruptStoreError extends StateError {}
export class InternalError extends StateError {}
export class PeerClosedError extends StateError {}
export function errorForCode (code: string, message: string, details?: unknown): StateError

/** One operation of a transaction or batch. */
export type StateOperation =
  | { type: 'get' | 'delete' | 'exists' | 'pop' | 'shift', key: string, id?: string }
  | { type: 'set', key: string, value: JsonValue, id?: string }
  | { type: 'increment' | 'decrement', key: string, delta?: number, id?: string }
  | { type: 'compareAndSwap', key: string, expected: JsonValue, newValue?: JsonValue, value?: JsonValue, id?: string }
  | { type: 'push' | 'unshift', key: string, items?: JsonValue[], value?: JsonValue, id?: string }
  | { type: 'setField', key: string, field: string, value: JsonValue, id?: string }
  | { type: 'deleteField', key: string, field: string, id?: string }

export type TransactionResult =
  | { success: true, results: JsonValue[] }
  | { success: false, results: [], error: string, failedIndex: number, code: ErrorCode }

export interface BatchItemResult { id?: string, value?: JsonValue, error?: string, code?: ErrorCode }
export interface BatchResult { results: BatchItemResult[] }

/** `ctx.state`: every operation is one call to the parent, which owns the state. */
export class StateManager {
  constructor (client: RpcClient)
  get<T extends JsonValue = JsonValue> (traceId: string, key: string): Promise<T | null>
  set<T extends JsonValue> (traceId: string, key: string, value: T): Promise<T>
  delete (traceId: string, key: string): Promise<JsonValue>
  exists (traceId: string, key: string): Promise<boolean>
  increment (traceId: string, key: string, delta?: number): Promise<number>
  decrement (traceId: string, key: string, delta?: number): Promise<number>
  compareAndSwap (traceId: string, key: string, expected: JsonValue, newValue: JsonValue): Promise<boolean>
  push (traceId: string, key: string, ...items: JsonValue[]): Promise<JsonValue[]>
  unshift (traceId: string, key: string, ...items: JsonValue[]): Promise<JsonValue[]>
  pop (traceId: string, key: string): Promise<JsonValue>
  shift (traceId: string, key: string): Promise<JsonValue>
  setField (traceId: string, key: string, field: string, value: JsonValue): Promise<{ [field: string]: JsonValue }>
  deleteField (traceId: string, key: string, field: string): Promise<{ [field: string]: JsonValue }>
  getGroup<T extends JsonValue = JsonValue> (groupId: string): Promise<T[]>
  keys (traceId: string): Promise<string[]>
  groups (): Promise<string[]>
  clear (traceId: string): Promise<void>
  transaction (traceId: string, operations: StateOperation[]): Promise<TransactionResult>
  batch (traceId: string, operations: StateOperation[]): Promise<BatchResult>
  /** Optimistic get + compareAndSwap loop; rejects with CONFLICT after UPDATE_RETRIES (64) lost races. */
  update<T extends JsonValue> (traceId: string, key: string, fn: (current: JsonValue) => T | Promise<T>): Promise<T>
  /** @deprecated use update */
  atomicUpdate<T extends JsonValue> (traceId: string, key: string, fn: (current: JsonValue) => T | Promise<T>): Promise<T>
}

export interface Logger {
  debug (msg: string, fields?: Record<string, unknown>): void
  info (msg: string, fields?: Record<string, unknown>): void
  warn (msg: string, fields?: Record<string, unknown>): void
  error (msg: string, fields?: Record<string, unknown>): void
}

/** The second argument of a step's handler. */
export interface Context {
  traceId: string
  state: StateManager
  logger: Logger
  emit (event: { topic: string, data?: JsonValue }): Promise<JsonValue>
  emit (topic: string, data?: JsonValue): Promise<JsonValue>
  flows?: string[]
  /** Call a method the embedding orchestrator registered. */
  call<T = JsonValue> (method: string, args?: JsonValue): Promise<T>
}

export type Handler<I = JsonValue, O = JsonValue> = (data: I, ctx: Context) => O | Promise<O>

export interface RpcFrame { type: 'rpc_request' | 'rpc_response', id?: string | number, method?: string, args?: JsonValue, result?: JsonValue, error?: { code: string, message: string, stack?: string } }

/** NDJSON RPC over a pair of byte streams (what the runner uses). */
export class RpcClient {
  constructor (
    input: NodeJS.ReadableStream,
    output: { write (chunk: string): unknown },
    options?: {
      onRequest?: (frame: RpcFrame) => void,
      /** Default: frameLimit(), from MOTIA_STEP_MAX_FRAME_BYTES. */
      maxFrameBytes?: number,
      /** The non-blocking fd behind `input`: lets a lone request poll it for its reply. */
      inputFd?: number,
      /** The poll's budget in microseconds (default from MOTIA_STEP_SPIN_US, else 50). */
      spinMicros?: number
    }
  )
  /** Rejects with INVALID_ARGUMENT (args not JSON) or LIMIT_EXCEEDED (frame too big) before sending. */
  request<T = JsonValue> (method: string, args?: JsonValue, options?: { checked?: boolean }): Promise<T>
  /** Throws as `request` rejects. */
  notify (method: string, args?: JsonValue): void
  respond (id: string | number, result: JsonValue): void
  respondError (id: string | number, code: string, message: string, stack?: string): void
  /** A frame of the parent's not served: reported on stderr, and answered with an error when `id` is a request's. */
  refuse (id: string | number | null | undefined, code: string, message: string): void
  close (reason: string): void
  readonly closedPromise: Promise<void>
}

/** The frame limit when the parent names none: 16 MiB. */
export const DEFAULT_MAX_FRAME: number
/** How deep a value may nest: 256 levels of arrays and objects. */
export const MAX_DEPTH: number
/** Levels a handler's result, an emit's data or `ctx.call` args may add around values: 64. */
export const WRAP_DEPTH: number
/** The frame limit: MOTIA_STEP_MAX_FRAME_BYTES (decimal bytes), else DEFAULT_MAX_FRAME. */
export function frameLimit (env?: Record<string, string | undefined>): number
/**
 * Throws INVALID_ARGUMENT naming where `value` is not JSON (undefined, NaN,
 * infinities, functions, symbols, BigInt, non-plain objects, lone
 * surrogates, cycles), or LIMIT_EXCEEDED when nested past MAX_DEPTH + extraDepth.
 */
export function checkJson (value: unknown, name: string, extraDepth?: number): void
/** The spin budget in microseconds: MOTIA_STEP_SPIN_US (default 50, at most 10,000), 0 on one CPU. */
export function spinMicros (env?: Record<string, string | undefined>, cpus?: number): number
/** Attempts of the optimistic `update` loop before CONFLICT: 64, as in the core. */
export const UPDATE_RETRIES: number
/** The release (package.json's version, the same as the Python package's). */
export const VERSION: string
export function loadStep (file: string): Promise<{ handler?: Handler, config?: unknown }>
export function main (argv: string[]): Promise<number>
