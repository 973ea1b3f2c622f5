// Runs INSIDE a sandbox: connects to each of PROBE_TARGETS (host:port, comma-separated) and
// reports what came back (the text until close, or the error code), how long it took, the
// sockets among its own fds, and whether an orphan it made was reaped by init.
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import net from 'node:net'

function ask(target) {
  const at = target.lastIndexOf(':')
  const host = target.slice(0, at).replace(/^\[|\]$/g, '')
  const port = Number(target.slice(at + 1))
  const started = Date.now()
  return new Promise(resolve => {
    const socket = net.connect({ port, host })
    let text = ''
    const done = answer => resolve({ answer, ms: Date.now() - started })
    socket.setEncoding('utf8').on('data', chunk => (text += chunk))
    socket.on('error', error => done(`error ${error.code}`))
    socket.on('close', () => done(text))
    socket.setTimeout(5000, () => {
      socket.destroy()
      done('timeout')
    })
  })
}

const answers = {}
for (const target of (process.env.PROBE_TARGETS ?? '').split(',').filter(Boolean)) answers[target] = await ask(target)
// Two at once through the same forward.
if (process.env.PROBE_TWICE) answers.twice = (await Promise.all([ask(process.env.PROBE_TWICE), ask(process.env.PROBE_TWICE)])).map(a => a.answer)

// An orphan: sh exits at once, its background sleep is reparented to init and must be reaped.
spawnSync('/bin/sh', ['-c', '/bin/sleep 0.1 &'])
await new Promise(resolve => setTimeout(resolve, 400))
const zombies = fs
  .readdirSync('/proc')
  .filter(d => /^\d+$/.test(d))
  .filter(pid => {
    try {
      return fs
        .readFileSync(`/proc/${pid}/stat`, 'utf8')
        .replace(/^.*\) /, '')
        .startsWith('Z')
    } catch {
      return false
    }
  })
const sockets = fs
  .readdirSync('/proc/self/fd')
  .filter(fd => {
    try {
      return fs.readlinkSync(`/proc/self/fd/${fd}`).startsWith('socket:')
    } catch {
      return false
    }
  })
  .map(Number)
process.stdout.write(JSON.stringify({ answers, zombies, sockets }))
