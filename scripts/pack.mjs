#!/usr/bin/env node
// The package as users get it runs nothing at install: its package.json has no scripts and no
// devDependencies (npm 11 lists `install` and `prepare` as install scripts to approve, pnpm
// reports ignored builds). This checkout's package.json keeps them for `npm ci` on a clone, so
// the tarball gets a publish manifest instead:
//
//   node scripts/pack.mjs prepack     npm's prepack: the prebuilt binaries this machine can build
//                                     (scripts/prebuild.mjs), dist/, then package.json becomes the
//                                     publish manifest (the original waits in build/)
//   node scripts/pack.mjs postpack    npm's postpack: the original package.json back
//   node scripts/pack.mjs stage DIR   the same tarball into DIR without touching this checkout
//                                     (tests and benchmarks pack while others read package.json)
//   node scripts/pack.mjs release     the release: every platform's binaries (a missing cross
//                                     compiler fails), dist/, the tarball staged in build/release/
//   node scripts/pack.mjs prepublish  npm's prepublishOnly: refuses `npm publish` of this
//                                     directory, whose registry metadata npm reads after postpack
//                                     (with the scripts); publish the release tarball instead
//
// A pack that failed between prepack and postpack leaves the publish manifest in place: the next
// prepack or postpack puts the original back first.
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const manifestPath = path.join(repo, 'package.json')
const backupPath = path.join(repo, 'build', 'package.json.orig')

/** package.json as published: no lifecycle or development scripts, no devDependencies. */
export function publishManifest(manifest) {
  const { scripts: _scripts, devDependencies: _dev, ...published } = manifest
  return published
}

function restore() {
  if (!fs.existsSync(backupPath)) return
  fs.copyFileSync(backupPath, manifestPath)
  fs.rmSync(backupPath)
}

function prebuild(...flags) {
  execFileSync(process.execPath, [path.join(repo, 'scripts', 'prebuild.mjs'), ...flags], { cwd: repo, stdio: 'inherit' })
}

function compileTypeScript() {
  execFileSync(process.execPath, [path.join(repo, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], { cwd: repo, stdio: 'inherit' })
}

/**
 * `npm pack` of this checkout as it would be after prepack, into `dest`: the files npm would
 * pack (its own list), the publish manifest, packed in a staging directory. Expects dist/ built
 * and the prebuilt binaries made (npm test does both). Returns npm's report of the tarball.
 */
export function stage(dest) {
  const listed = JSON.parse(
    execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: repo, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }),
  )[0]
  const files = listed.files.map(f => f.path)
  const missing = ['dist/index.js', 'dist/cli/index.js'].filter(f => !files.includes(f))
  if (missing.length) throw new Error(`scripts/pack.mjs stage: ${missing.join(', ')} not built (npm run build)`)
  fs.mkdirSync(dest, { recursive: true })
  const root = fs.mkdtempSync(path.join(dest, '.stage-'))
  try {
    for (const file of files) {
      fs.mkdirSync(path.dirname(path.join(root, file)), { recursive: true })
      fs.copyFileSync(path.join(repo, file), path.join(root, file))
      fs.chmodSync(path.join(root, file), fs.statSync(path.join(repo, file)).mode & 0o777)
    }
    const manifest = JSON.parse(fs.readFileSync(manifestPath, 'utf8'))
    fs.writeFileSync(path.join(root, 'package.json'), `${JSON.stringify(publishManifest(manifest), null, 2)}\n`)
    const packed = JSON.parse(
      execFileSync('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', dest], {
        cwd: root,
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, npm_config_update_notifier: 'false' },
      }),
    )[0]
    return { ...packed, tarball: path.join(dest, packed.filename) }
  } finally {
    fs.rmSync(root, { recursive: true, force: true })
  }
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const [command, dir] = process.argv.slice(2)
  if (command === 'prepack') {
    restore()
    prebuild()
    // npm reads package.json again after prepack: `prepare` is gone from it by then.
    compileTypeScript()
    const original = fs.readFileSync(manifestPath, 'utf8')
    fs.mkdirSync(path.dirname(backupPath), { recursive: true })
    fs.writeFileSync(backupPath, original)
    fs.writeFileSync(manifestPath, `${JSON.stringify(publishManifest(JSON.parse(original)), null, 2)}\n`)
  } else if (command === 'postpack') {
    restore()
  } else if (command === 'stage' && dir) {
    console.log(stage(path.resolve(dir)).tarball)
  } else if (command === 'release') {
    prebuild('--release')
    compileTypeScript()
    const out = path.join(repo, 'build', 'release')
    fs.rmSync(out, { recursive: true, force: true })
    const packed = stage(out)
    console.log(
      `[release] ${packed.tarball}: ${packed.files.length} files, ${packed.size} bytes\n[release] publish it with: npm publish ${path.relative(process.cwd(), packed.tarball)}`,
    )
  } else if (command === 'prepublish') {
    console.error(
      '[vitest-pool-isolated] publish the release tarball, not this directory: `npm run release`, then the `npm publish <tarball>` it prints ' +
        "(npm would send this package.json, scripts included, as the registry's metadata).",
    )
    process.exit(1)
  } else {
    console.error('usage: node scripts/pack.mjs prepack | postpack | stage DIR | release | prepublish')
    process.exit(2)
  }
}
