// A minimal Chrome DevTools Protocol client over a plain TCP socket: enough of HTTP for
// /json/list and of RFC 6455 (masked text frames out, unmasked text frames in) to drive Node's
// inspector. Node 20 has no global WebSocket and the repo does not depend on `ws`.
import crypto from 'node:crypto'
import { EventEmitter } from 'node:events'
import net from 'node:net'

/** GET a path from host:port; resolves with the body (the inspector answers with JSON). */
export function httpGet(port: number, path: string, host = '127.0.0.1'): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host })
    let text = ''
    socket.setEncoding('utf8')
    socket.on('connect', () => socket.write(`GET ${path} HTTP/1.1\r\nHost: ${host}:${port}\r\nConnection: close\r\n\r\n`))
    // Node's inspector keeps the connection open after its answer: read Content-Length bytes.
    const complete = () => {
      const at = text.indexOf('\r\n\r\n')
      const length = /\r\ncontent-length: *(\d+)/i.exec(text.slice(0, at))?.[1]
      return at >= 0 && length !== undefined && Buffer.byteLength(text.slice(at + 4)) >= Number(length)
    }
    const finish = () => {
      const at = text.indexOf('\r\n\r\n')
      if (!/^HTTP\/1\.[01] 200/.test(text) || at < 0) reject(new Error(`unexpected answer: ${text.slice(0, 200)}`))
      else resolve(text.slice(at + 4))
    }
    socket.on('data', (chunk: string) => {
      text += chunk
      if (complete()) {
        socket.destroy()
        finish()
      }
    })
    socket.on('error', reject)
    socket.on('close', finish)
  })
}

export interface CdpMessage {
  id?: number
  method?: string
  params?: unknown
  result?: unknown
  error?: unknown
}

/** One CDP session on a `ws://host:port/<id>` URL. Emits 'message' (parsed) and 'close'. */
export class CdpSocket extends EventEmitter {
  private nextId = 1
  private buffer = Buffer.alloc(0)
  private constructor(private readonly socket: net.Socket) {
    super()
  }

  static open(url: string): Promise<CdpSocket> {
    const { hostname, port, pathname } = new URL(url)
    return new Promise((resolve, reject) => {
      const socket = net.connect({ port: Number(port), host: hostname })
      const key = crypto.randomBytes(16).toString('base64')
      socket.once('error', reject)
      socket.once('connect', () =>
        socket.write(
          `GET ${pathname} HTTP/1.1\r\nHost: ${hostname}:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
            `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
        ),
      )
      let head = Buffer.alloc(0)
      const onHead = (chunk: Buffer) => {
        head = Buffer.concat([head, chunk])
        const at = head.indexOf('\r\n\r\n')
        if (at < 0) return
        socket.off('data', onHead)
        const status = head.subarray(0, at).toString('latin1')
        if (!/^HTTP\/1\.[01] 101/.test(status)) return reject(new Error(`no websocket upgrade: ${status}`))
        const cdp = new CdpSocket(socket)
        socket.off('error', reject)
        socket.on('error', () => {})
        socket.on('data', (data: Buffer) => cdp.onData(data))
        socket.on('close', () => cdp.emit('close'))
        cdp.onData(head.subarray(at + 4))
        resolve(cdp)
      }
      socket.on('data', onHead)
    })
  }

  /** Sends a command; resolves with its id. */
  send(method: string, params: Record<string, unknown> = {}): number {
    const id = this.nextId++
    const payload = Buffer.from(JSON.stringify({ id, method, params }))
    const mask = crypto.randomBytes(4)
    const len = payload.length
    const header =
      len < 126
        ? Buffer.from([0x81, 0x80 | len])
        : len < 65536
          ? Buffer.from([0x81, 0x80 | 126, len >> 8, len & 0xff])
          : (() => {
              const h = Buffer.alloc(10)
              h[0] = 0x81
              h[1] = 0x80 | 127
              h.writeBigUInt64BE(BigInt(len), 2)
              return h
            })()
    const masked = Buffer.alloc(len)
    for (let i = 0; i < len; i++) masked[i] = payload[i]! ^ mask[i % 4]!
    this.socket.write(Buffer.concat([header, mask, masked]))
    return id
  }

  close(): void {
    this.socket.destroy()
  }

  private onData(data: Buffer): void {
    this.buffer = Buffer.concat([this.buffer, data])
    for (;;) {
      if (this.buffer.length < 2) return
      const opcode = this.buffer[0]! & 0x0f
      let len = this.buffer[1]! & 0x7f
      let offset = 2
      if (len === 126) {
        if (this.buffer.length < 4) return
        len = this.buffer.readUInt16BE(2)
        offset = 4
      } else if (len === 127) {
        if (this.buffer.length < 10) return
        len = Number(this.buffer.readBigUInt64BE(2))
        offset = 10
      }
      if (this.buffer.length < offset + len) return
      const payload = this.buffer.subarray(offset, offset + len)
      this.buffer = this.buffer.subarray(offset + len)
      if (opcode === 0x1) this.emit('message', JSON.parse(payload.toString('utf8')) as CdpMessage)
      else if (opcode === 0x8) this.socket.end()
    }
  }
}
