// `vitest-pool-isolated hunt` against the same runs as separate `vitest run` commands (issue 10):
//
//   node bench/hunt.mjs [--suite plain|ts] [--files 8] [--tests 5] [--modules 40] [--runs 3] [--cpus 0.5,1] [--rounds 2]
//
// --suite plain (default): bench/gen-suite.mjs's .mjs suite, nearly nothing to load or transform,
// so each run is almost all sandbox time: the least hunt can save. --suite ts: a TypeScript
// project (vitest.config.ts, every test file importing a graph of --modules .ts modules), which
// every separate `vitest run` bundles and transforms again and hunt transforms once.
//
// One side is one `hunt --runs R --cpus LIST` (R x conditions runs in one Vitest process); the
// other is the same R x conditions runs, each its own `VITEST_ISOLATED_CPUS=c vitest run
// --pool=isolated` (a fresh Vite server, config load and transforms every time). Both on a
// generated suite (bench/gen-suite.mjs), alternating which goes first each round; prints the
// medians and the ratio hunt / separate (issue 10 aims at <= 0.6).
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { checkBuilt, ensureSuite, list, machineFacts, median, REPO, SUITES, VITEST } from './lib.mjs'

const { values } = parseArgs({
  options: {
    files: { type: 'string', default: '8' },
    tests: { type: 'string', default: '5' },
    runs: { type: 'string', default: '3' },
    cpus: { type: 'string', default: '0.5,1' },
    rounds: { type: 'string', default: '2' },
    suite: { type: 'string', default: 'plain' },
    modules: { type: 'string', default: '40' },
  },
})
if (!['plain', 'ts'].includes(values.suite)) throw new Error(`--suite must be plain or ts; received ${values.suite}`)
const files = Number(values.files)
const tests = Number(values.tests)
const runs = Number(values.runs)
const rounds = Number(values.rounds)
const cpus = list(values.cpus)
checkBuilt()
const suite = values.suite === 'ts' ? tsSuite(files, tests, Number(values.modules)) : ensureSuite(files, tests)

/** A TypeScript project: typed modules in a chain of imports, and test files importing all of them. */
function tsSuite(files, tests, modules) {
  const dir = path.join(SUITES, `hunt-ts-${files}x${tests}x${modules}`)
  if (fs.existsSync(path.join(dir, 'vitest.config.ts'))) return dir
  fs.mkdirSync(path.join(dir, 'src'), { recursive: true })
  fs.mkdirSync(path.join(dir, 'test'), { recursive: true })
  const w = (rel, text) => fs.writeFileSync(path.join(dir, rel), text)
  w('package.json', '{ "name": "bench-hunt-ts", "private": true, "type": "module" }\n')
  w(
    'vitest.config.ts',
    `import { defineConfig } from 'vitest/config'\nimport { isolated } from '${path.join(REPO, 'dist', 'index.js')}'\n\nexport default defineConfig({ plugins: [isolated()], test: { include: ['test/**/*.test.ts'] } })\n`,
  )
  for (let m = 0; m < modules; m++) {
    const prev = m > 0 ? `import { f${m - 1}, type Shape${m - 1} } from './m${m - 1}.js'\n` : ''
    w(
      `src/m${m}.ts`,
      `${prev}export interface Shape${m} { id: number; name: string; tags: readonly string[]; next?: Shape${m} }\n` +
        `export enum Kind${m} { A = 'a', B = 'b', C = 'c' }\n` +
        `export class Box${m}<T extends { id: number }> {\n  private readonly items = new Map<number, T>()\n  add(item: T): this { this.items.set(item.id, item); return this }\n  get size(): number { return this.items.size }\n}\n` +
        `export function f${m}(n: number): number {\n  const s: Shape${m} = { id: n, name: \`s\${n}\`, tags: [Kind${m}.A] }\n  return ${m > 0 ? `f${m - 1}(n) + ` : ''}s.id % 7 + new Box${m}<Shape${m}>().add(s).size\n}\n` +
        (m > 0 ? `export type Prev${m} = Shape${m - 1}\n` : ''),
    )
  }
  w('src/index.ts', Array.from({ length: modules }, (_, m) => `export * from './m${m}.js'`).join('\n') + '\n')
  for (let f = 0; f < files; f++) {
    w(
      `test/t${f}.test.ts`,
      `import { describe, expect, test } from 'vitest'\nimport { f${modules - 1} } from '../src/index.js'\n\ndescribe('file ${f}', () => {\n` +
        Array.from({ length: tests }, (_, t) => `  test('case ${t}', () => { expect(f${modules - 1}(${t})).toBeGreaterThan(0) })`).join('\n') +
        '\n})\n',
    )
  }
  return dir
}
const CLI = path.join(REPO, 'dist', 'cli', 'index.js')

function timed(args, env = {}) {
  return new Promise((resolve, reject) => {
    const t0 = performance.now()
    const child = spawn(process.execPath, args, {
      cwd: suite,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, CI: undefined, NO_COLOR: '1', ...env },
    })
    let out = ''
    child.stdout.on('data', d => {
      out += d
    })
    child.stderr.on('data', d => {
      out += d
    })
    child.on('close', code => {
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

console.log(
  `bench/hunt.mjs: ${values.suite} suite ${path.relative(REPO, suite)}, ${files} files x ${tests} tests, ${runs} runs x cpus ${cpus.join(',')} (${runs * cpus.length} runs a side), ${rounds} rounds`,
)
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
