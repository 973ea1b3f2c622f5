#!/usr/bin/env node
// What node flags and a code cache do to the start of a worker's runtime, outside any sandbox:
// `node FLAGS -e "await import(vitest/dist/worker.js)"` per variant, alternated round-robin,
// median CPU (user + system, /usr/bin/time, 10 ms resolution) and wall per variant.
// A variant is "FLAGS" or "VAR=V VAR=V|FLAGS"; "" is plain node.
//
//   node bench/worker-start.mjs --major 4 --rounds 15 -- "" "--max-semi-space-size=16" "--single-threaded-gc"
//   node bench/worker-start.mjs --major 5 --rounds 15 -- "" "NODE_COMPILE_CACHE=/tmp/wcc|"   # the first round fills it
import { spawnSync } from 'node:child_process'
import path from 'node:path'
import { parseArgs } from 'node:util'

import { machineFacts, majorOf, median } from './lib.mjs'

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { major: { type: 'string', default: '4' }, rounds: { type: 'string', default: '15' } },
})
const major = majorOf(values.major)
const worker = path.join(path.dirname(major.vitest), 'dist', 'worker.js')
const variants = positionals.length ? positionals : ['']
console.log(machineFacts())
console.log(`node ${major.nodeVersion}, import ${worker}; ${values.rounds} rounds`)
const res = variants.map(() => ({ cpu: [], wall: [] }))
for (let r = 0; r < Number(values.rounds); r++) {
  for (let k = 0; k < variants.length; k++) {
    const i = (k + r) % variants.length
    const [vars, flags] = variants[i].includes('|') ? variants[i].split('|') : ['', variants[i]]
    const env = { ...process.env }
    for (const kv of vars.split(' ').filter(Boolean)) env[kv.slice(0, kv.indexOf('='))] = kv.slice(kv.indexOf('=') + 1)
    const p = spawnSync(
      '/usr/bin/time',
      ['-f', '%U %S %e', major.node, ...flags.split(' ').filter(Boolean), '--input-type=module', '-e', `await import(${JSON.stringify(worker)})`],
      { env, encoding: 'utf8' },
    )
    if (p.status !== 0) {
      console.error(`!! FAILED: ${variants[i]}\n${p.stderr}`)
      process.exit(1)
    }
    const [u, s, e] = p.stderr.trim().split('\n').pop().split(' ').map(Number)
    res[i].cpu.push((u + s) * 1000)
    res[i].wall.push(e * 1000)
  }
}
for (const [i, v] of variants.entries()) {
  console.log(`${median(res[i].cpu).toFixed(0).padStart(5)} ms CPU ${median(res[i].wall).toFixed(0).padStart(5)} ms wall  ${v || '(plain node)'}`)
}
