import fs from 'node:fs'
import path from 'node:path'
import { expect, test } from 'vitest'
import { REPO_ROOT } from '../support/repo.js'

// The layer order of src/ (ARCHITECTURE.md): a module imports only from its own folder or from
// folders listed after its own (or of its own row, the circle test keeping those apart). Top-level
// files are their own entries.
const LAYERS: string[][] = [
  ['index.ts', 'plugin.ts', 'cli'],
  ['pool'],
  ['run'],
  ['zygote'],
  ['guard'],
  ['sandbox'],
  ['worker'],
  ['ipc', 'cgroup', 'vitest'],
  ['options'],
  ['native'],
  ['errors.ts', 'hints.ts', 'suggest.ts'],
]

const SRC = path.join(REPO_ROOT, 'src')

function unitOf(file: string): string {
  const [first] = path.relative(SRC, file).split(path.sep)
  return first!
}

function rankOf(unit: string): number {
  const rank = LAYERS.findIndex(layer => layer.includes(unit))
  if (rank < 0) throw new Error(`src/${unit} is in no layer: add it to LAYERS here and to ARCHITECTURE.md`)
  return rank
}

/** Every relative import of every module of src/, static, dynamic and type-only. */
function importsOf(): Map<string, string[]> {
  const graph = new Map<string, string[]>()
  for (const entry of fs.readdirSync(SRC, { recursive: true, encoding: 'utf8' })) {
    if (!entry.endsWith('.ts')) continue
    const file = path.join(SRC, entry)
    const text = fs.readFileSync(file, 'utf8')
    const targets = [...text.matchAll(/(?:\bfrom|\bimport\(|^import)\s*'(\.\.?\/[^']+)\.js'/gm)].map(m => path.join(path.dirname(file), m[1]!) + '.ts')
    graph.set(file, targets)
  }
  return graph
}

test('src/ has at most six files at its top level', () => {
  const top = fs
    .readdirSync(SRC, { withFileTypes: true })
    .filter(e => e.isFile())
    .map(e => e.name)
  expect(top.length, top.join(', ')).toBeLessThanOrEqual(6)
})

test('no module imports against the layer order', () => {
  const against: string[] = []
  for (const [file, targets] of importsOf()) {
    for (const target of targets) {
      expect(fs.existsSync(target), `${file} imports ${target}, which does not exist`).toBe(true)
      const from = unitOf(file),
        to = unitOf(target)
      if (from !== to && rankOf(to) < rankOf(from)) against.push(`${path.relative(SRC, file)} -> ${path.relative(SRC, target)}`)
    }
  }
  expect(against).toEqual([])
})

test('no import circle between modules', () => {
  const graph = importsOf()
  const state = new Map<string, 'open' | 'done'>()
  const circles: string[] = []
  const visit = (file: string, trail: string[]) => {
    if (state.get(file) === 'done') return
    if (state.get(file) === 'open') {
      circles.push([...trail.slice(trail.indexOf(file)), file].map(f => path.relative(SRC, f)).join(' -> '))
      return
    }
    state.set(file, 'open')
    for (const target of graph.get(file) ?? []) visit(target, [...trail, file])
    state.set(file, 'done')
  }
  for (const file of graph.keys()) visit(file, [])
  expect(circles).toEqual([])
})

test('the test can fail: it sees an import against the order', () => {
  expect(rankOf('native')).toBeGreaterThan(rankOf('sandbox'))
  expect(rankOf('pool')).toBeLessThan(rankOf('run'))
  expect(() => rankOf('nowhere')).toThrow(/in no layer/)
})

test('ARCHITECTURE.md names every folder and top-level file of src/, and the same layers', () => {
  const map = fs.readFileSync(path.join(REPO_ROOT, 'ARCHITECTURE.md'), 'utf8')
  for (const entry of fs.readdirSync(SRC, { withFileTypes: true })) {
    const name = entry.isDirectory() ? `${entry.name}/` : entry.name
    expect(map, `ARCHITECTURE.md does not name src/${name}`).toContain(`\`${name}\``)
  }
  const units = new Set(fs.readdirSync(SRC))
  const rows = [...map.matchAll(/^\| (\d+) \| (.+) \|$/gm)].map(m =>
    [...m[2]!.matchAll(/`([^`]+)`/g)].map(n => n[1]!.replace(/\/$/, '')).filter(n => units.has(n)),
  )
  expect(rows).toEqual(LAYERS.map(layer => layer.filter(unit => units.has(unit))))
})

test('a file of src/ or addon/src over 400 lines says why at its top', () => {
  const silent: string[] = []
  for (const dir of [SRC, path.join(REPO_ROOT, 'addon/src')]) {
    for (const entry of fs.readdirSync(dir, { recursive: true, encoding: 'utf8' })) {
      const file = path.join(dir, entry)
      if (!/\.(ts|c|cc|h)$/.test(entry) || !fs.statSync(file).isFile()) continue
      const lines = fs.readFileSync(file, 'utf8').split('\n')
      if (lines.length > 400 && !lines.slice(0, 20).some(line => line.includes('Over 400 lines')))
        silent.push(`${path.relative(REPO_ROOT, file)} (${lines.length})`)
    }
  }
  expect(silent).toEqual([])
})
