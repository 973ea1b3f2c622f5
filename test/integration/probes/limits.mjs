// Runs INSIDE a sandbox: pushes one limit named by LIMIT and reports what the kernel said.
import fs from 'node:fs'
import { spawnSync } from 'node:child_process'

const out = {}
switch (process.env.LIMIT) {
  case 'memory': {
    const keep = []
    for (let i = 0; i < 64; i++) keep.push(Buffer.alloc(16 << 20, 1)) // 1 GiB, touched
    out.allocated = keep.length
    break
  }
  case 'cpu': {
    const start = Date.now()
    let _n = 0
    while (Date.now() - start < 2000) _n++
    out.wallMs = Date.now() - start
    break
  }
  case 'pids': {
    // A bounded fork bomb: 200 shell children; the pids limit must refuse some.
    const r = spawnSync('/bin/sh', ['-c', 'for i in $(seq 200); do sleep 2 & done 2>&1; wait'], { encoding: 'utf8' })
    out.stderr = r.stderr + r.stdout
    out.eagain = /fork|resource temporarily unavailable/i.test(r.stderr + r.stdout)
    break
  }
  case 'tmp': {
    try {
      const chunk = Buffer.alloc(1 << 20, 1)
      const fd = fs.openSync('/tmp/fill', 'w')
      for (let i = 0; i < 1024; i++) fs.writeSync(fd, chunk)
      out.code = 'none'
    } catch (e) {
      out.code = e.code
      out.size = fs.statSync('/tmp/fill').size
    }
    break
  }
}
process.stdout.write(JSON.stringify(out) + '\n')
