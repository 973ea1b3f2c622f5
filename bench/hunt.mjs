// `vitest-pool-isolated hunt` against the same runs as separate `vitest run` commands (issue 10):
//
//   node bench/hunt.mjs [--files 8] [--tests 5] [--runs 3] [--cpus 0.5,1] [--rounds 2]
//
// One side is one `hunt --runs R --cpus LIST` (R x conditions runs in one Vitest process); the
// other is the same R x conditions runs, each its own `VITEST_ISOLATED_CPUS=c vitest run
// --pool=isolated` (a fresh Vite server, config load and transforms every time). Both on a
// generated suite (bench/gen-suite.mjs), alternating which goes first each round; prints the
// medians and the ratio hunt / separate (issue 10 aims at <= 0.6).
import { spawn } from 'node:child_process'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { checkBuilt, ensureSuite, list, machineFacts, median, REPO, VITEST } from './lib.mjs'

const { values } = parseArgs({
  options: {
    files: { type: 'string', default: '8' },
    tests: { type: 'string', default: '5' },
    runs: { type: 'string', default: '3' },
    cpus: { type: 'string', default: '0.5,1' },
    rounds: { type: 'string', default: '2' },
  },
})
const files = Number(values.files)
const tests = Number(values.tests)
const runs = Number(values.runs)
const rounds = Number(values.rounds)
const cpus = list(values.cpus)
checkBuilt()
const suite = ensureSuite(files, tests)
const CLI = path.join(REPO, 'dist', 'cli', 'index.js')

function timed(args, env = {}) {
  return new Promise((resolve, reject) => {
    const t0 = performance.now()
    const child = spawn(process.execPath, args, { cwd: suite, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, CI: undefined, NO_COLOR: '1', ...env } })
    let out = ''
    child.stdout.on('data', (d) => { out += d })
    child.stderr.on('data', (d) => { out += d })
    child.on('close', (code) => {
      const ms = performance.now() - t0
      if (code !== 0) reject(new Error(`${args.join(' ')} exited ${code}:\n${out.slice(-3000)}`))
      else resolve({ ms, out })
    })
  })
}

async function huntOnce() {
  const { ms, out } = await timed([CLI, 'hunt', '--runs', String(runs), '--cpus', cpus.join(',')])
  const expected = `${files * tests} stable tests (no failure in ${runs * cpus.length} runs)`
  if (!out.includes(expected)) throw new Error(`hunt did not report "${expected}":\n${out}`)
  return ms
}

async function separateOnce() {
  let total = 0
  for (let r = 0; r < runs; r++) {
    for (const c of cpus) {
      const { ms, out } = await timed([VITEST, 'run', '--pool=isolated'], { VITEST_ISOLATED_CPUS: c, VITEST_ISOLATED_ENFORCE: 'require' })
      if (!new RegExp(`Tests\\s+${files * tests} passed`).test(out)) throw new Error(`vitest run did not pass ${files * tests} tests:\n${out}`)
      total += ms
    }
  }
  return total
}

console.log(`bench/hunt.mjs: ${files} files x ${tests} tests, ${runs} runs x cpus ${cpus.join(',')} (${runs * cpus.length} runs a side), ${rounds} rounds`)
console.log(machineFacts())
const huntMs = []
const sepMs = []
for (let round = 0; round < rounds; round++) {
  const order = round % 2 === 0 ? ['hunt', 'separate'] : ['separate', 'hunt']
  for (const side of order) {
    if (side === 'hunt') huntMs.push(await huntOnce())
    else sepMs.push(await separateOnce())
    console.log(`  round ${round + 1} ${side.padEnd(8)} ${((side === 'hunt' ? huntMs : sepMs).at(-1) / 1000).toFixed(2)} s`)
  }
}
const h = median(huntMs)
const s = median(sepMs)
console.log(`hunt (one Vitest process)          median ${(h / 1000).toFixed(2)} s`)
console.log(`separate vitest run commands       median ${(s / 1000).toFixed(2)} s`)
console.log(`ratio hunt / separate: ${(h / s).toFixed(2)}`)
