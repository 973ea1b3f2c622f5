import { describe, expect, test } from 'vitest'
import { DEFAULT_RUNS, parseHuntArgs, UsageError } from '../../src/cli/hunt-args.js'

function usage(argv: string[]): string {
  try {
    parseHuntArgs(argv)
  } catch (error) {
    expect(error).toBeInstanceOf(UsageError)
    return (error as Error).message
  }
  throw new Error(`accepted: ${argv.join(' ')}`)
}

describe('hunt arguments', () => {
  test('defaults: 10 runs, one condition without limits, no shuffle', () => {
    expect(parseHuntArgs([])).toEqual({
      runs: DEFAULT_RUNS,
      conditions: [{ cpus: null, memory: null, memoryBytes: null }],
      shuffle: false,
      seed: undefined,
      json: undefined,
      html: undefined,
      vitestArgs: [],
    })
  })

  test('the cross product of --cpus and --memory, cpus outer, memory as written', () => {
    const plan = parseHuntArgs(['--runs', '4', '--cpus', '0.25,1', '--memory', '128M,none', '--json', 'out.json'])
    expect(plan).toMatchObject({
      runs: 4,
      json: 'out.json',
      conditions: [
        { cpus: 0.25, memory: '128M', memoryBytes: 128 << 20 },
        { cpus: 0.25, memory: null, memoryBytes: null },
        { cpus: 1, memory: '128M', memoryBytes: 128 << 20 },
        { cpus: 1, memory: null, memoryBytes: null },
      ],
    })
  })

  test('everything after -- goes to Vitest untouched', () => {
    expect(parseHuntArgs(['--runs=2', '--', 'test/x.test.ts', '-t', 'name', '--runs'])).toMatchObject({
      runs: 2,
      vitestArgs: ['test/x.test.ts', '-t', 'name', '--runs'],
    })
  })

  test('--seed implies --shuffle', () => {
    expect(parseHuntArgs(['--seed', '42'])).toMatchObject({ shuffle: true, seed: 42 })
    expect(parseHuntArgs(['--shuffle'])).toMatchObject({ shuffle: true, seed: undefined })
  })

  test('--help', () => {
    expect(parseHuntArgs(['--help'])).toBe('help')
    expect(parseHuntArgs(['-h', '--runs', 'x'])).toBe('help')
  })

  test('bad values name the flag and the accepted forms', () => {
    expect(usage(['--runs', '0'])).toBe('--runs must be a whole number of at least 1, like --runs 10; received "0"')
    expect(usage(['--runs', '2.5'])).toMatch(/^--runs must be a whole number/)
    expect(usage(['--cpus', '0.25,fast'])).toBe(
      '--cpus must be numbers of CPUs greater than 0 or none, comma-separated, like 0.25,1 or 0.5,none; received "0.25,fast" (the item "fast" is not one)',
    )
    expect(usage(['--cpus', '0'])).toMatch(/^--cpus must be numbers of CPUs greater than 0/)
    expect(usage(['--cpus', '1,,2'])).toMatch(/the item "" is not one/)
    expect(usage(['--memory', '512'])).toMatch(/^--memory must be sizes or none, comma-separated, like 128M,512M/)
    expect(usage(['--memory', '128MB'])).toMatch(/^--memory must be sizes/)
    expect(usage(['--memory', '1G,1G'])).toBe('--memory lists "1G" twice; received "1G,1G"')
    expect(usage(['--seed', '-1'])).toMatch(/--seed|Option '--seed/)
    expect(usage(['--seed', 'abc'])).toBe('--seed must be a whole number of 0 or more, like --seed 1234; received "abc"')
    expect(usage(['--json', ''])).toMatch(/^--json must be a file path/)
  })

  test('unknown flags and stray arguments point to --', () => {
    expect(usage(['--project', 'unit'])).toMatch(/Unknown option '--project'.*Vitest's flags go after --/)
    expect(usage(['test/x.test.ts'])).toBe(
      'unexpected argument "test/x.test.ts": test files and Vitest flags go after --, like: hunt --runs 4 -- test/x.test.ts',
    )
    expect(usage(['--runs'])).toMatch(/--runs.*argument missing/)
  })
})
