/**
 * One fixed-size record from a pipe, read on the event loop (a libuv pipe handle), not by a
 * blocking read on the thread pool: a sandbox that takes long to finish its setup, or a copy of
 * the zygote that takes long to enter, must not hold one of the pool's few threads, which
 * Vitest main needs for its own file system work.
 */
import net from 'node:net'

/**
 * The first `size` bytes written to the pipe's read end `fd`, or undefined at EOF before them;
 * rejects on a read error. Takes `fd` (closed when settled).
 */
export function readRecord(fd: number, size: number): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    const socket = new net.Socket({ fd, readable: true, writable: false })
    const chunks: Buffer[] = []
    let got = 0
    const done = (record: Buffer | undefined, error?: Error) => {
      socket.removeAllListeners()
      socket.on('error', () => {})
      socket.destroy()
      if (error) reject(error)
      else resolve(record)
    }
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk)
      got += chunk.length
      if (got >= size) done(Buffer.concat(chunks).subarray(0, size))
    })
    socket.on('end', () => done(undefined))
    socket.on('error', (error: Error) => done(undefined, error))
  })
}
