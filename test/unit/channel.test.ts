import v8 from 'node:v8'
import { describe, expect, test, vi } from 'vitest'
import { ProtocolError } from '../../src/errors.js'
import { Channel, encodeFrame, FrameDecoder, MAX_FRAME_BYTES } from '../../src/ipc/channel.js'
import { socketPair } from '../support/socket-pair.js'

const values: unknown[] = [
  { __vitest_worker_request__: true, type: 'start', n: 1 },
  'text',
  42,
  undefined,
  null,
  [1, [2, [3]]],
  new Map([['a', new Set([1, 2])]]),
  /re+gex/gi,
  new Date(0),
  Buffer.from('bytes'),
  { big: 'x'.repeat(200_000) },
]

function roundTrip(chunks: Buffer[]): unknown[] {
  const decoder = new FrameDecoder()
  return chunks.flatMap(chunk => decoder.push(chunk))
}

describe('framing', () => {
  test('a frame is a 4-byte big-endian length and the v8 serialization', () => {
    const frame = encodeFrame({ a: 1 })
    const body = v8.serialize({ a: 1 })
    expect(frame.readUInt32BE(0)).toBe(body.length)
    expect(frame.subarray(4)).toEqual(body)
  })

  test("values survive as with serialization: 'advanced'", () => {
    const decoded = roundTrip(values.map(value => encodeFrame(value)))
    expect(decoded).toEqual(values)
    const error = roundTrip([encodeFrame(new TypeError('boom'))])[0] as Error
    expect(error).toBeInstanceOf(Error)
    expect(error.message).toBe('boom')
  })

  test('many frames in one chunk', () => {
    expect(roundTrip([Buffer.concat(values.map(value => encodeFrame(value)))])).toEqual(values)
  })

  test('frames split byte by byte', () => {
    const stream = Buffer.concat(values.slice(0, 6).map(value => encodeFrame(value)))
    const decoder = new FrameDecoder()
    const decoded: unknown[] = []
    for (let i = 0; i < stream.length; i++) decoded.push(...decoder.push(stream.subarray(i, i + 1)))
    expect(decoded).toEqual(values.slice(0, 6))
    expect(decoder.pendingBytes).toBe(0)
  })

  test('frames split at every offset, with the header split too', () => {
    const stream = Buffer.concat([encodeFrame('first'), encodeFrame({ second: [2] }), encodeFrame(3)])
    for (let cut = 0; cut <= stream.length; cut++) {
      expect(roundTrip([stream.subarray(0, cut), stream.subarray(cut)]), `cut at ${cut}`).toEqual(['first', { second: [2] }, 3])
    }
  })

  test('a large frame in many small chunks', () => {
    const value = { data: Buffer.alloc(3 * 1024 * 1024, 7) }
    const frame = encodeFrame(value)
    const chunks: Buffer[] = []
    for (let i = 0; i < frame.length; i += 65536) chunks.push(frame.subarray(i, i + 65536))
    const decoded = roundTrip(chunks) as [typeof value]
    expect(decoded).toHaveLength(1)
    expect(Buffer.compare(Buffer.from(decoded[0].data), value.data)).toBe(0)
  })

  test('an incomplete frame yields nothing yet', () => {
    const decoder = new FrameDecoder()
    const frame = encodeFrame('abc')
    expect(decoder.push(frame.subarray(0, frame.length - 1))).toEqual([])
    expect(decoder.pendingBytes).toBe(frame.length - 1)
    expect(decoder.push(frame.subarray(frame.length - 1))).toEqual(['abc'])
  })

  test('a length over 256 MiB is a ProtocolError that shows what arrived', () => {
    const decoder = new FrameDecoder()
    // What a stray console.log into fd 3 looks like.
    const push = () => decoder.push(Buffer.from('hello from a test\n'))
    expect(push).toThrow(ProtocolError)
    expect(push).toThrow(/frame header announcing 1751477356 bytes, more than the 256 MiB limit; the stream starts with 68 65 6c 6c .*"hello from a tes/)
    // Out of sync for good.
    expect(() => decoder.push(encodeFrame(1))).toThrow(ProtocolError)
  })

  test('the limit is exactly 256 MiB', () => {
    expect(MAX_FRAME_BYTES).toBe(256 * 1024 * 1024)
    const header = Buffer.alloc(4)
    header.writeUInt32BE(MAX_FRAME_BYTES, 0)
    expect(new FrameDecoder().push(header)).toEqual([])
    header.writeUInt32BE(MAX_FRAME_BYTES + 1, 0)
    expect(() => new FrameDecoder().push(header)).toThrow(ProtocolError)
  })

  test('a body that does not deserialize is a ProtocolError', () => {
    const garbage = Buffer.from('not v8 at all')
    const frame = Buffer.concat([Buffer.from([0, 0, 0, garbage.length]), garbage])
    const decoder = new FrameDecoder()
    let error: ProtocolError | undefined
    try {
      decoder.push(frame)
    } catch (e) {
      error = e as ProtocolError
    }
    expect(error).toBeInstanceOf(ProtocolError)
    expect(error!.message).toMatch(/^\[vitest-pool-isolated\] IPC protocol error: could not deserialize a frame of 13 bytes \(6e 6f 74 20 .*"not v8 at all/)
    expect(error!.preview).toMatch(/^6e 6f 74/)
    expect(error!.cause).toBeInstanceOf(Error)
  })

  test('an empty frame is a ProtocolError', () => {
    expect(() => new FrameDecoder().push(Buffer.alloc(4))).toThrow(/could not deserialize a frame of 0 bytes/)
  })

  test('sending something v8 cannot serialize throws at the sender', () => {
    expect(() => encodeFrame({ fn: () => {} })).toThrow()
  })
})

const pair = socketPair

function next<T = unknown>(channel: Channel, event: 'message' | 'close' | 'error'): Promise<T> {
  return new Promise(resolve => channel.once(event, resolve as (arg: unknown) => void))
}

describe('Channel', () => {
  test('messages both ways, in order', async () => {
    const [a, b] = await pair()
    const left = new Channel(a)
    const right = new Channel(b)
    const got: unknown[] = []
    right.on('message', value => got.push(value))
    for (const value of values) left.send(value)
    // Not a fixed sleep: under load the socket may deliver later.
    await vi.waitFor(() => expect(got).toHaveLength(values.length))
    expect(got).toEqual(values)
    const reply = next(left, 'message')
    right.send({ reply: true })
    expect(await reply).toEqual({ reply: true })
  })

  test("the frames of one turn leave in one write, and the peer's first read has them all", async () => {
    const [a, b] = await pair()
    const left = new Channel(a)
    const writes = vi.spyOn(a, '_writev' as never)
    const chunks: Buffer[] = []
    b.on('data', (chunk: Buffer) => chunks.push(chunk))
    const small = Array.from({ length: 50 }, (_, i) => ({ t: 'q', m: 'onTaskUpdate', i }))
    for (const value of small) left.send(value)
    expect(chunks).toHaveLength(0)
    await vi.waitFor(() => expect(roundTrip(chunks)).toHaveLength(50))
    expect(writes).toHaveBeenCalledTimes(1)
    expect(chunks).toHaveLength(1)
    expect(roundTrip(chunks)).toEqual(small)
  })

  test('sends still leave while a test fakes the timers (setImmediate was saved at load)', async () => {
    const [a, b] = await pair()
    const left = new Channel(a)
    const right = new Channel(b)
    const got = next(right, 'message')
    vi.useFakeTimers({ toFake: ['setImmediate', 'setTimeout', 'queueMicrotask'] })
    try {
      left.send({ under: 'fake timers' })
      expect(await got).toEqual({ under: 'fake timers' })
    } finally {
      vi.useRealTimers()
    }
  })

  test('close sends what was queued first', async () => {
    const [a, b] = await pair()
    const left = new Channel(a)
    const right = new Channel(b)
    const got: unknown[] = []
    right.on('message', value => got.push(value))
    const closed = next(right, 'close')
    left.send(1)
    left.send(2)
    left.close()
    await closed
    expect(got).toEqual([1, 2])
  })

  test('garbage makes a protocol error, then close, and no message', async () => {
    const [raw, end] = await pair()
    const channel = new Channel(end)
    const events: string[] = []
    channel.on('message', () => events.push('message'))
    const error = next<Error>(channel, 'error')
    channel.on('error', () => events.push('error'))
    channel.on('close', () => events.push('close'))
    raw.write(Buffer.concat([Buffer.from('GET / HTTP/1.1\r\n'), encodeFrame('never')]))
    expect(await error).toBeInstanceOf(ProtocolError)
    await new Promise(resolve => setTimeout(resolve, 10))
    expect(events).toEqual(['error', 'close'])
    expect(channel.isClosed).toBe(true)
    expect(channel.send('dropped')).toBe(false)
  })

  test('after a protocol error the peer reads no end-of-file until the owner destroys the channel', async () => {
    const [raw, end] = await pair()
    const channel = new Channel(end)
    let peerEnded = false
    raw
      .on('end', () => {
        peerEnded = true
      })
      .on('close', () => {
        peerEnded = true
      })
      .on('error', () => {})
    raw.resume()
    const error = next<Error>(channel, 'error')
    raw.write('hello from a test\n')
    await error
    // The owner kills the peer first (pool-worker's SIGKILL): until then, no EOF tells it to end itself.
    await new Promise(resolve => setTimeout(resolve, 50))
    expect(peerEnded).toBe(false)
    channel.destroy()
    await vi.waitFor(() => expect(peerEnded).toBe(true))
  })

  test('the peer ending is a close; sends after it are dropped', async () => {
    const [a, b] = await pair()
    const left = new Channel(a)
    const right = new Channel(b)
    const closed = next(right, 'close')
    left.close()
    await closed
    expect(right.isClosed).toBe(true)
    expect(right.send({})).toBe(false)
  })

  test('close is emitted once', async () => {
    const [a] = await pair()
    const channel = new Channel(a)
    let closes = 0
    channel.on('close', () => closes++)
    channel.destroy()
    channel.destroy()
    await new Promise(resolve => setTimeout(resolve, 10))
    expect(closes).toBe(1)
  })

  test('a stream error is a close carrying the error, not a protocol error', async () => {
    const [a] = await pair()
    const channel = new Channel(a)
    const errors: unknown[] = []
    channel.on('error', e => errors.push(e))
    const closed = next<Error | undefined>(channel, 'close')
    a.emit('error', Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }))
    expect((await closed)?.message).toBe('read ECONNRESET')
    expect(errors).toEqual([])
  })
})
