/**
 * Length-prefixed v8 frames: a 4-byte big-endian body length, then `v8.serialize(value)`.
 *
 * v8 serialization is the value space of Vitest's `serialization: 'advanced'` for forks (Error,
 * RegExp, Map, undefined, typed arrays survive), which is what its RPC payloads assume. This module
 * runs on both sides, inside the sandbox too, so it depends on node builtins only.
 */
import { EventEmitter } from 'node:events'
import type { Duplex } from 'node:stream'
import { debuglog } from 'node:util'
import v8 from 'node:v8'
import { ProtocolError } from '../errors.js'

// Saved at load time, before any test code runs in the worker: a test that mocks or spies on
// node:v8 must not be able to break the channel its results travel on.
const serialize = v8.serialize
const deserialize = v8.deserialize
// The same for the timer the frames of one turn wait on: Vitest's fake timers replace the
// global setImmediate while a test runs, and a faked one would never send them.
const setImmediateSaved = setImmediate

const debug = debuglog('vitest-pool-isolated')

/** Largest frame body accepted, in bytes. Vitest's biggest messages (coverage) stay far below. */
export const MAX_FRAME_BYTES = 256 * 1024 * 1024

const HEADER_BYTES = 4

/**
 * One frame for `value`.
 *
 * @throws {ProtocolError} when the serialized value is larger than {@link MAX_FRAME_BYTES}
 * @throws {Error} (DataCloneError) when the value holds something v8 cannot serialize, such as a function
 */
export function encodeFrame(value: unknown): Buffer {
  const body = serialize(value)
  if (body.length > MAX_FRAME_BYTES) {
    throw new ProtocolError(`refusing to send a message of ${body.length} bytes; frames are limited to ${formatBytes(MAX_FRAME_BYTES)}`, hexPreview(body))
  }
  const frame = Buffer.allocUnsafe(HEADER_BYTES + body.length)
  frame.writeUInt32BE(body.length, 0)
  body.copy(frame, HEADER_BYTES)
  return frame
}

/**
 * Turns a byte stream back into values. Feed it chunks as they arrive; frames may be split
 * anywhere and several may share a chunk. After it throws, the stream is out of sync for good and
 * every later `push` throws the same error.
 */
export class FrameDecoder {
  private readonly chunks: Buffer[] = []
  private buffered = 0
  /** Body length of the frame being read, or -1 while its header is incomplete. */
  private expected = -1
  private failure: ProtocolError | undefined

  constructor(private readonly maxFrameBytes = MAX_FRAME_BYTES) {}

  /** Bytes received but not yet decoded (a partly read frame, header included). */
  get pendingBytes(): number {
    return this.buffered + (this.expected >= 0 ? HEADER_BYTES : 0)
  }

  /**
   * Adds a chunk and returns the values of every frame it completed, in order.
   *
   * @throws {ProtocolError} for a frame longer than the limit or a body v8 cannot deserialize
   */
  push(chunk: Uint8Array): unknown[] {
    if (this.failure) throw this.failure
    if (chunk.length > 0) {
      this.chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length))
      this.buffered += chunk.length
    }
    const values: unknown[] = []
    for (;;) {
      if (this.expected < 0) {
        if (this.buffered < HEADER_BYTES) break
        const header = this.peek(Math.min(this.buffered, HEADER_BYTES + 16))
        const length = header.readUInt32BE(0)
        if (length > this.maxFrameBytes) {
          throw this.fail(
            new ProtocolError(
              `received a frame header announcing ${length} bytes, more than the ${formatBytes(this.maxFrameBytes)} limit; ` +
                `the stream starts with ${describeBytes(header)}. Something other than the channel wrote to the IPC descriptor (fd 3).`,
              hexPreview(header),
            ),
          )
        }
        this.take(HEADER_BYTES)
        this.expected = length
      }
      if (this.buffered < this.expected) break
      const body = this.take(this.expected)
      this.expected = -1
      try {
        values.push(deserialize(body))
      } catch (error) {
        throw this.fail(
          new ProtocolError(
            `could not deserialize a frame of ${body.length} bytes (${describeBytes(body.subarray(0, 16))}): ${(error as Error)?.message ?? error}`,
            hexPreview(body),
            { cause: error },
          ),
        )
      }
    }
    return values
  }

  private fail(error: ProtocolError): ProtocolError {
    this.failure = error
    this.chunks.length = 0
    this.buffered = 0
    return error
  }

  /** The first `n` buffered bytes, without consuming them. */
  private peek(n: number): Buffer {
    if (this.chunks[0].length >= n) return this.chunks[0].subarray(0, n)
    const parts: Buffer[] = []
    let length = 0
    for (const chunk of this.chunks) {
      if (length >= n) break
      parts.push(chunk)
      length += chunk.length
    }
    return Buffer.concat(parts, length).subarray(0, n)
  }

  /**
   * Consumes `n` buffered bytes. Copies only when a frame spans chunks, and then once: a large
   * frame arriving in many chunks is concatenated when complete, not chunk by chunk.
   */
  private take(n: number): Buffer {
    if (n === 0) return Buffer.alloc(0)
    this.buffered -= n
    const first = this.chunks[0]
    if (first.length === n) {
      this.chunks.shift()
      return first
    }
    if (first.length > n) {
      this.chunks[0] = first.subarray(n)
      return first.subarray(0, n)
    }
    const out = Buffer.allocUnsafe(n)
    let offset = 0
    while (offset < n) {
      const chunk = this.chunks[0]
      const used = Math.min(chunk.length, n - offset)
      chunk.copy(out, offset, 0, used)
      offset += used
      if (used === chunk.length) this.chunks.shift()
      else this.chunks[0] = chunk.subarray(used)
    }
    return out
  }
}

/** Events of a {@link Channel}. */
export interface Channel {
  /** A decoded value arrived. */
  on(event: 'message', listener: (value: unknown) => void): this
  /** The stream ended or broke; no more messages will arrive and `send` is a no-op. Emitted once. */
  on(event: 'close', listener: (error?: Error) => void): this
  /**
   * The peer sent bytes that are not a frame ({@link ProtocolError}); 'close' follows. The stream
   * stays open (paused) until `destroy()`, so that the owner ends the peer before it sees EOF.
   */
  on(event: 'error', listener: (error: ProtocolError) => void): this
  off(event: 'message', listener: (value: unknown) => void): this
  off(event: 'close', listener: (error?: Error) => void): this
  off(event: 'error', listener: (error: ProtocolError) => void): this
}

/**
 * A message channel over a byte stream (the sandbox's socketpair). Both sides use it: Vitest
 * main wraps `Sandbox.ipc`, the worker wraps its fd 3.
 *
 * The frames sent during one turn of the event loop leave in one write (a `writev` of all of
 * them) when the turn ends: Vitest's RPC sends many small messages at once (a file's task
 * updates, a burst of module fetches), and a write, and the peer's read, per message cost both
 * sides more than the messages themselves.
 */
// biome-ignore lint/suspicious/noUnsafeDeclarationMerging: the interface above only types the events EventEmitter implements
export class Channel extends EventEmitter {
  private readonly decoder: FrameDecoder
  private readonly write: (chunk: Buffer) => boolean
  private readonly cork: () => void
  private readonly uncork: () => void
  /** Frames sent this turn, written together by {@link flush}. */
  private queued: Buffer[] = []
  private closed = false

  constructor(
    private readonly stream: Duplex,
    options: { maxFrameBytes?: number } = {},
  ) {
    super()
    this.decoder = new FrameDecoder(options.maxFrameBytes)
    // Bound now: in the worker, test code may later patch stream prototypes.
    this.write = stream.write.bind(stream)
    this.cork = stream.cork.bind(stream)
    this.uncork = stream.uncork.bind(stream)
    stream.on('data', (chunk: Buffer) => this.onData(chunk))
    stream.on('end', () => this.onClose())
    stream.on('close', () => this.onClose())
    // ECONNRESET / EPIPE mean the peer is gone: a close, not a protocol error. Whoever owns the
    // peer (the sandbox's exit, the worker's process) reports why.
    stream.on('error', (error: Error) => this.onClose(error))
  }

  /** True once the stream ended; `send` then drops messages. */
  get isClosed(): boolean {
    return this.closed
  }

  /**
   * Sends one value: queued, and written with the others of this turn when it ends. Returns false
   * if the channel is closed (the value is dropped).
   *
   * @throws like {@link encodeFrame}, synchronously
   */
  send(value: unknown): boolean {
    const frame = encodeFrame(value)
    if (this.closed) {
      debug('channel closed, dropping a message of %d bytes', frame.length)
      return false
    }
    if (this.queued.push(frame) === 1) setImmediateSaved(() => this.flush())
    return true
  }

  /** Writes the queued frames now, in one write. */
  flush(): void {
    const frames = this.queued
    if (frames.length === 0) return
    this.queued = []
    if (this.closed || this.stream.writableEnded) return
    if (frames.length === 1) {
      this.write(frames[0]!)
      return
    }
    // Corked writes leave in one writev when uncorked.
    this.cork()
    for (const frame of frames) this.write(frame)
    this.uncork()
  }

  /** Ends our side of the stream after the queued frames; the peer sees end-of-file. */
  close(): void {
    this.flush()
    if (!this.stream.writableEnded) this.stream.end()
  }

  /** Tears the stream down at once; queued frames are dropped. */
  destroy(): void {
    this.queued = []
    this.stream.destroy()
    this.onClose()
  }

  /** Lets the process exit while the channel is open (net.Socket only). */
  unref(): void {
    ;(this.stream as Duplex & { unref?: () => void }).unref?.()
  }

  /** Keeps the process alive while the channel is open (net.Socket only). */
  ref(): void {
    ;(this.stream as Duplex & { ref?: () => void }).ref?.()
  }

  private onData(chunk: Buffer): void {
    if (this.closed) return
    let values: unknown[]
    try {
      values = this.decoder.push(chunk)
    } catch (error) {
      // The error first, so the owner learns why before it hears of the close. The stream is
      // not torn down here: the peer would read end-of-file and could end itself first, which
      // would make how it ended a race. It is paused (nothing more is read) until the owner,
      // having ended the peer, calls destroy().
      this.stream.pause()
      this.emit('error', error)
      this.onClose(error as Error)
      return
    }
    for (const value of values) {
      this.emit('message', value)
      // A listener may have destroyed the channel; later values of this chunk must not arrive.
      if (this.closed) return
    }
  }

  private onClose(error?: Error): void {
    if (this.closed) return
    this.closed = true
    if (error) debug('channel stream error: %s', error.message)
    if (this.decoder.pendingBytes > 0) debug('channel closed with %d undecoded bytes', this.decoder.pendingBytes)
    this.emit('close', error)
  }
}

function formatBytes(bytes: number): string {
  if (bytes % (1024 * 1024) === 0) return `${bytes / (1024 * 1024)} MiB`
  return `${bytes} bytes`
}

function hexPreview(bytes: Uint8Array, max = 32): string {
  const shown = Buffer.from(bytes.buffer, bytes.byteOffset, Math.min(bytes.length, max))
  const hex = shown.toString('hex').replace(/(..)(?!$)/g, '$1 ')
  return bytes.length > max ? `${hex} …` : hex
}

/** Hex and, where printable, text: stray output on fd 3 is usually readable text. */
function describeBytes(bytes: Uint8Array): string {
  const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length)
    .toString('latin1')
    .replace(/[^\x20-\x7e]/g, '.')
  return `${hexPreview(bytes)} (${JSON.stringify(text)})`
}
