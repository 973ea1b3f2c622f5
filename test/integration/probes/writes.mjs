// Runs INSIDE a sandbox as the worker. Performs the file operations listed in ACTIONS (a JSON
// array of { op, path, data? }) in order and prints one JSON array with the kernel's answer to
// each: { ok: true, value } or { ok: false, code }.
import fs from 'node:fs'

const actions = JSON.parse(process.env.ACTIONS ?? '[]')

const ops = {
  write: a => fs.writeFileSync(a.path, a.data ?? 'x'),
  read: a => fs.readFileSync(a.path, 'utf8'),
  exists: a => fs.existsSync(a.path),
  stat: a => {
    const st = fs.statSync(a.path)
    return { uid: st.uid, gid: st.gid, mode: st.mode & 0o7777 }
  },
  mkdir: a => fs.mkdirSync(a.path),
  chmod: a => fs.chmodSync(a.path, a.mode),
  // A new file created with this mode (umask aside); the value is the mode it got.
  create: a => {
    fs.closeSync(fs.openSync(a.path, 'wx', a.mode))
    return fs.statSync(a.path).mode & 0o7777
  },
  rm: a => fs.rmSync(a.path, { recursive: true }),
  readdir: a => fs.readdirSync(a.path).sort(),
  // Writes 1 MiB chunks until the file system refuses; the value is how many fitted.
  fill: a => {
    const chunk = Buffer.alloc(1 << 20, 1)
    const fd = fs.openSync(a.path, 'w')
    let n = 0
    try {
      for (; n < (a.max ?? 1024); n++) fs.writeSync(fd, chunk)
    } catch (e) {
      fs.closeSync(fd)
      e.message = `${e.message} after ${n} MiB`
      e.mib = n
      throw e
    }
    fs.closeSync(fd)
    return n
  },
}

const out = actions.map(a => {
  try {
    return { ok: true, value: ops[a.op](a) }
  } catch (e) {
    return { ok: false, code: e.code, ...(e.mib !== undefined ? { mib: e.mib } : {}) }
  }
})
process.stdout.write(JSON.stringify(out))
