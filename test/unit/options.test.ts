import { describe, expect, test } from 'vitest'
import { IsolatedOptionsError } from '../../src/errors.js'
import { checkProjectPids, MIN_MEMORY, MIN_PIDS, resolveOptions, sizeToBytes, tasksNodeNeeds, type IsolatedOptions } from '../../src/options/index.js'

const MiB = 2 ** 20
const GiB = 2 ** 30

/** The error resolveOptions throws, for assertions on it. */
function problemsOf(user: unknown, env: NodeJS.ProcessEnv = {}): IsolatedOptionsError {
  try {
    resolveOptions(user as IsolatedOptions, env)
  } catch (error) {
    expect(error).toBeInstanceOf(IsolatedOptionsError)
    return error as IsolatedOptionsError
  }
  throw new Error('resolveOptions accepted the options')
}

describe('defaults', () => {
  test('no options', () => {
    expect(resolveOptions(undefined, {})).toEqual({
      network: 'loopback',
      hostname: 'isolated',
      tmpSizeBytes: 256 * MiB,
      mounts: [],
      env: {},
      secretsPass: [],
      warnings: [],
      enforce: 'try',
      seccomp: { deny: [] },
      summary: true,
      hostPorts: [],
      audit: false,
      zygote: true,
      projectWrites: 'readonly',
    })
  })

  test('an empty object is the same as none', () => {
    expect(resolveOptions({}, {})).toEqual(resolveOptions(undefined, {}))
  })

  test('unset limits stay absent, not undefined-valued keys', () => {
    expect(Object.keys(resolveOptions({}, {})).sort()).toEqual([
      'audit',
      'enforce',
      'env',
      'hostPorts',
      'hostname',
      'mounts',
      'network',
      'projectWrites',
      'seccomp',
      'secretsPass',
      'summary',
      'tmpSizeBytes',
      'warnings',
      'zygote',
    ])
  })

  test('reads process.env when no environment is passed', () => {
    const saved = process.env.VITEST_ISOLATED_PIDS
    process.env.VITEST_ISOLATED_PIDS = '77'
    try {
      expect(resolveOptions({}).pids).toBe(77)
    } finally {
      if (saved === undefined) delete process.env.VITEST_ISOLATED_PIDS
      else process.env.VITEST_ISOLATED_PIDS = saved
    }
  })
})

describe('sizes (memory, tmpSize)', () => {
  test.each([
    [1, 1],
    [536870912, 512 * MiB],
    ['1024', 1024],
    ['256K', 256 * 1024],
    ['512M', 512 * MiB],
    ['512m', 512 * MiB],
    ['1G', GiB],
    ['1.5G', 1.5 * GiB],
    ['2T', 2 * 2 ** 40],
    ['512MiB', 512 * MiB],
    ['512Mi', 512 * MiB],
    ['100B', 100],
    [' 64M ', 64 * MiB],
    ['64 M', 64 * MiB],
    ['.5K', 512],
  ])('%j is %d bytes', (input, bytes) => {
    expect(sizeToBytes(input)).toBe(bytes)
    if (bytes >= MIN_MEMORY) expect(resolveOptions({ memory: input }, {}).memoryBytes).toBe(bytes)
    expect(resolveOptions({ tmpSize: input }, {}).tmpSizeBytes).toBe(bytes)
  })

  test.each([
    [
      { memory: '1M' },
      {},
      'option "memory" must be at least 32 MiB: a worker needs about 24 MiB to start node and Vitest\'s runtime before any test runs; received "1M"',
    ],
    [{ memory: 512 * 1024 }, {}, 'received 524288'],
    [{}, { VITEST_ISOLATED_MEMORY: '16M' }, 'environment variable VITEST_ISOLATED_MEMORY (option "memory") must be at least 32 MiB'],
  ])('a memory limit node cannot start under is refused with the minimum: %o %o', (options, env, message) => {
    expect(() => resolveOptions(options, env)).toThrow(message)
  })

  test('fractions round down to whole bytes', () => {
    expect(sizeToBytes('1.0001K')).toBe(1024)
  })

  test.each([
    'lots',
    '',
    '512MB',
    '1KB',
    '-1G',
    '0',
    0,
    -5,
    1.5,
    Number.NaN,
    Infinity,
    '1e9',
    '1 G B',
    'G',
    true,
    null,
    {},
    [],
    '0.0001',
    Number.MAX_SAFE_INTEGER + 2,
  ])('%j is refused', input => {
    const error = problemsOf({ memory: input })
    expect(error.problems).toHaveLength(1)
    expect(error.problems[0]!.option).toBe('memory')
    expect(error.message).toContain("option \"memory\" must be a byte count greater than 0 or a size like '512M' or '1G'; received ")
  })

  test('the message quotes the value received', () => {
    expect(problemsOf({ memory: 'lots' }).message).toBe(
      '[vitest-pool-isolated] option "memory" must be a byte count greater than 0 or a size like \'512M\' or \'1G\'; received "lots"',
    )
    expect(problemsOf({ tmpSize: -1 }).message).toBe(
      "[vitest-pool-isolated] option \"tmpSize\" must be a byte count greater than 0 or a size like '512M' or '1G'; received -1",
    )
  })
})

describe('cpus', () => {
  test.each([1, 0.5, 2, 16, 0.01])('%d is accepted', cpus => {
    expect(resolveOptions({ cpus }, {}).cpus).toBe(cpus)
  })
  test.each([0, -1, Number.NaN, Infinity, '1', null])('%j is refused', cpus => {
    expect(problemsOf({ cpus }).message).toContain('option "cpus" must be a number of CPUs greater than 0, like 1 or 0.5; received ')
  })
})

describe('pids', () => {
  test.each([16, 32, 256, 4096])('%d is accepted', pids => {
    expect(resolveOptions({ pids }, {}).pids).toBe(pids)
  })
  test.each([0, -1, 1.5, '256', Number.NaN])('%j is refused', pids => {
    expect(problemsOf({ pids }).message).toContain('option "pids" must be a whole number, at least 16; received ')
  })

  // Measured: node and the sandbox's init use 12 tasks before the worker answers Vitest (11 made
  // node abort, 5 and 6 left it hung); 16 leaves a margin.
  test('the floor is 16: 12 tasks node and init need before any test runs, plus a margin', () => {
    expect(tasksNodeNeeds()).toBe(12)
    expect(MIN_PIDS).toBe(16)
  })

  test.each([1, 5, 12, 15])('%d is refused at config load, naming the option, the value and the minimum', pids => {
    const error = problemsOf({ pids })
    expect(error.problems).toEqual([{ option: 'pids', message: expect.any(String) }])
    expect(error.message).toBe(
      `[vitest-pool-isolated] option "pids" must be at least 16: pids counts threads, and the sandbox uses 12 tasks (node's threads and the sandbox's init) before any test runs; received ${pids}`,
    )
  })

  test('VITEST_ISOLATED_PIDS=5 is refused naming the variable, the option, the value and the minimum', () => {
    const error = problemsOf({}, { VITEST_ISOLATED_PIDS: '5' })
    expect(error.problems).toEqual([{ option: 'pids', message: expect.any(String) }])
    expect(error.message).toBe(
      '[vitest-pool-isolated] environment variable VITEST_ISOLATED_PIDS (option "pids") must be at least 16: pids counts threads, and the sandbox uses 12 tasks (node\'s threads and the sandbox\'s init) before any test runs; received "5"',
    )
  })

  test('a config value below the floor is refused even when the environment overrides it', () => {
    expect(problemsOf({ pids: 5 }, { VITEST_ISOLATED_PIDS: '64' }).problems.map(p => p.option)).toEqual(['pids'])
    expect(problemsOf({ pids: 64 }, { VITEST_ISOLATED_PIDS: '8' }).message).toContain('VITEST_ISOLATED_PIDS (option "pids") must be at least 16')
  })

  test('a larger libuv thread pool raises the floor, from the shell or from the env option', () => {
    expect(tasksNodeNeeds({ UV_THREADPOOL_SIZE: '16' })).toBe(24)
    expect(problemsOf({ pids: 20 }, { UV_THREADPOOL_SIZE: '16' }).message).toContain(
      'option "pids" must be at least 28: pids counts threads, and the sandbox uses 24 tasks (node\'s threads and the sandbox\'s init) with UV_THREADPOOL_SIZE=16 before any test runs; received 20',
    )
    expect(problemsOf({ pids: 20, env: { UV_THREADPOOL_SIZE: '16' } }).message).toContain('must be at least 28')
    expect(resolveOptions({ pids: 28, env: { UV_THREADPOOL_SIZE: '16' } }, {}).pids).toBe(28)
    // libuv clamps the pool to 1..1024.
    expect(tasksNodeNeeds({ UV_THREADPOOL_SIZE: '0' })).toBe(9)
    expect(tasksNodeNeeds({ UV_THREADPOOL_SIZE: '99999' })).toBe(8 + 1024)
    expect(resolveOptions({ pids: 13 }, { UV_THREADPOOL_SIZE: '1' }).pids).toBe(13)
  })

  test('a project\'s test.env or execArgv that raises the floor over "pids" is refused once the project is known', () => {
    const options = resolveOptions({ pids: 16 }, {})
    let error: unknown
    try {
      checkProjectPids(options, { name: 'api', env: { UV_THREADPOOL_SIZE: '64' } }, {})
    } catch (e) {
      error = e
    }
    expect(error).toBeInstanceOf(IsolatedOptionsError)
    expect((error as Error).message).toBe(
      '[vitest-pool-isolated] option "pids" (16) must be at least 76 for project "api": its test.env sets UV_THREADPOOL_SIZE=64, ' +
        'and pids counts threads: the sandbox uses 72 tasks (node\'s threads and the sandbox\'s init) before any test runs. Raise "pids" (or VITEST_ISOLATED_PIDS), or lower the thread count.',
    )
    expect(() => checkProjectPids(options, { name: '', execArgv: ['--v8-pool-size=16'] }, {})).toThrow(
      'must be at least 28 for the project: its execArgv is --v8-pool-size=16',
    )
    // Enough, or no limit: nothing to say.
    checkProjectPids(resolveOptions({ pids: 76 }, {}), { name: 'api', env: { UV_THREADPOOL_SIZE: '64' } }, {})
    checkProjectPids(resolveOptions({}, {}), { name: 'api', env: { UV_THREADPOOL_SIZE: '64' } }, {})
  })

  test('--v8-pool-size in NODE_OPTIONS or execArgv changes what node needs', () => {
    expect(tasksNodeNeeds({ NODE_OPTIONS: '--v8-pool-size=8' })).toBe(16)
    expect(tasksNodeNeeds({}, ['--v8-pool-size', '1'])).toBe(9)
    expect(problemsOf({ pids: 16 }, { NODE_OPTIONS: '--max-old-space-size=100 --v8-pool-size=8' }).message).toContain('must be at least 20')
  })
})

describe('timeout', () => {
  test.each([1, 30_000])('%d is accepted', timeout => {
    expect(resolveOptions({ timeout }, {}).timeoutMs).toBe(timeout)
  })
  test.each([0, -1, 1.5, '30s', Infinity])('%j is refused', timeout => {
    expect(problemsOf({ timeout }).message).toContain('option "timeout" must be a whole number of milliseconds of at least 1; received ')
  })
})

describe('network', () => {
  test.each(['loopback', 'none', 'host'] as const)('%s is accepted', network => {
    expect(resolveOptions({ network }, {}).network).toBe(network)
  })
  test.each(['bridge', 'LOOPBACK', '', 1])('%j is refused', network => {
    expect(problemsOf({ network }).message).toContain("option \"network\" must be one of 'loopback', 'none', 'host'; received ")
  })
})

describe('hostname', () => {
  test.each(['isolated', 'a', 'test-box', 'test-box.local', 'A1', 'x'.repeat(63), `${'a'.repeat(31)}.${'b'.repeat(32)}`])('%s is accepted', hostname => {
    expect(resolveOptions({ hostname }, {}).hostname).toBe(hostname)
  })
  test.each(['', '-box', 'box-', 'a..b', '.a', 'a.', 'under_score', 'sp ace', 'x'.repeat(64) + 'y', `${'a'.repeat(32)}.${'b'.repeat(32)}`, 'x'.repeat(64), 42])(
    '%j is refused',
    hostname => {
      expect(problemsOf({ hostname }).message).toContain('option "hostname" must be a hostname of at most 64 characters')
    },
  )
})

describe('mounts', () => {
  test('bind mounts: target defaults to source, read-only by default, sources normalised (targets may not climb)', () => {
    expect(
      resolveOptions(
        {
          mounts: [{ source: '/opt/data' }, { source: '/srv/cache/', target: '/cache', writable: true }, { source: '/a/b/../c', target: '/c' }],
        },
        {},
      ).mounts,
    ).toEqual([
      { kind: 'bind', source: '/opt/data', target: '/opt/data', writable: false },
      { kind: 'bind', source: '/srv/cache', target: '/cache', writable: true },
      { kind: 'bind', source: '/a/c', target: '/c', writable: false },
    ])
  })

  test('tmpfs mounts: size defaults to tmpSize', () => {
    expect(resolveOptions({ tmpSize: '64M', mounts: [{ tmpfs: '/scratch' }, { tmpfs: '/big', size: '1G' }, { tmpfs: '/n', size: 4096 }] }, {}).mounts).toEqual([
      { kind: 'tmpfs', target: '/scratch', sizeBytes: 64 * MiB },
      { kind: 'tmpfs', target: '/big', sizeBytes: GiB },
      { kind: 'tmpfs', target: '/n', sizeBytes: 4096 },
    ])
  })

  test('relative paths are refused', () => {
    const error = problemsOf({ mounts: [{ source: 'data' }, { source: '/x', target: 'y' }, { tmpfs: './t' }] })
    expect(error.problems.map(p => p.option)).toEqual(['mounts[0].source', 'mounts[1].target', 'mounts[2].tmpfs'])
    expect(error.problems[0]!.message).toBe('option "mounts[0].source" must be an absolute path, like \'/opt/data\'; received "data"')
  })

  test('bad entries are refused, each with its index', () => {
    const error = problemsOf({
      mounts: [
        'x',
        { source: '/a', tmpfs: '/b' },
        {},
        { source: '/a', writable: 'yes' },
        { tmpfs: '/t', size: 'big' },
        { source: '/a', readonly: true },
        { source: '/' },
        { tmpfs: '/' },
        { source: '/a\0b' },
      ],
    })
    expect(error.problems.map(p => p.option)).toEqual([
      'mounts[0]',
      'mounts[1]',
      'mounts[2]',
      'mounts[3].writable',
      'mounts[4].size',
      'mounts[5].readonly',
      'mounts[6].target',
      'mounts[7].tmpfs',
      'mounts[8].source',
    ])
  })

  test('not an array', () => {
    expect(problemsOf({ mounts: { source: '/a' } }).message).toContain(
      'option "mounts" must be an array of { source, target?, writable? } or { tmpfs, size? }; received {"source":"/a"}',
    )
  })
})

describe('env', () => {
  test('strings are passed on', () => {
    expect(resolveOptions({ env: { TZ: 'UTC', EMPTY: '' } }, {}).env).toEqual({ TZ: 'UTC', EMPTY: '' })
  })
  test('non-strings and bad names are refused', () => {
    const error = problemsOf({ env: { A: 1, B: undefined, 'C=D': 'x', E: 'a\0b' } })
    expect(error.problems.map(p => p.option)).toEqual(['env.A', 'env.B', 'env["C=D"]', 'env.E'])
  })
  test('not an object', () => {
    expect(problemsOf({ env: ['A=1'] }).problems[0]!.option).toBe('env')
  })
})

describe('enforce', () => {
  test('require, try or off; the environment wins', () => {
    expect(resolveOptions({ enforce: 'require' }, {}).enforce).toBe('require')
    expect(resolveOptions({ enforce: 'require' }, { VITEST_ISOLATED_ENFORCE: 'off' }).enforce).toBe('off')
  })

  test('anything else names the option and the accepted forms', () => {
    expect(problemsOf({ enforce: 'always' }).message).toBe(
      "[vitest-pool-isolated] option \"enforce\" must be one of 'require', 'try', 'off'; received \"always\"",
    )
  })
})

describe('seccomp', () => {
  test('on by default; false turns it off; deny takes known names and numbers', () => {
    expect(resolveOptions({}, {}).seccomp).toEqual({ deny: [] })
    expect(resolveOptions({ seccomp: false }, {}).seccomp).toBe(false)
    expect(resolveOptions({ seccomp: { deny: ['ptrace', 400] } }, {}).seccomp).toEqual({ deny: ['ptrace', 400] })
  })

  test('an unknown name is named, with the closest known one', () => {
    const error = problemsOf({ seccomp: { deny: ['ptrase'] } })
    expect(error.problems[0]!.option).toBe('seccomp.deny[0]')
    expect(error.message).toContain('did you mean "ptrace"?')
  })
})

describe('report', () => {
  test('file is made absolute against the working directory', () => {
    expect(resolveOptions({ report: { file: 'out/report.json' } }, {}).reportFile).toBe(`${process.cwd()}/out/report.json`)
    expect(resolveOptions({ report: { file: '/tmp/r.json' } }, {}).reportFile).toBe('/tmp/r.json')
    expect(resolveOptions({ report: {} }, {}).reportFile).toBeUndefined()
  })
  test('bad values are refused', () => {
    expect(problemsOf({ report: 'r.json' }).problems[0]!.option).toBe('report')
    expect(problemsOf({ report: { file: '' } }).problems[0]!.option).toBe('report.file')
    expect(problemsOf({ report: { path: 'r.json' } }).message).toContain('option "report.path" is not a known option (known: file, summary)')
    expect(problemsOf({ report: { summary: 'no' } }).message).toContain('option "report.summary" must be true or false; received "no"')
    expect(resolveOptions({ report: { summary: false } }, {}).summary).toBe(false)
  })
})

describe('unknown keys', () => {
  test('are named, with the closest known key', () => {
    const error = problemsOf({ memroy: '1G' })
    expect(error.problems).toEqual([
      {
        option: 'memroy',
        message: expect.stringContaining(
          'option "memroy" is not a known option (known: memory, cpus, pids, timeout, network, hostname, tmpSize, mounts, env, secrets, report, enforce, seccomp, hostPorts, audit, zygote, projectWrites); did you mean "memory"?',
        ),
      },
    ])
  })
  test.each([
    ['cpu', 'cpus'],
    ['tmpsize', 'tmpSize'],
    ['mount', 'mounts'],
    ['hostName', 'hostname'],
    ['timout', 'timeout'],
  ])('%s suggests %s', (key, suggestion) => {
    expect(problemsOf({ [key]: 1 }).message).toContain(`did you mean "${suggestion}"?`)
  })
  test('without a plausible match, no suggestion', () => {
    expect(problemsOf({ colour: 'red' }).message).not.toContain('did you mean')
  })
  test('in a mount entry, the suggestion carries the path', () => {
    expect(problemsOf({ mounts: [{ source: '/a', writeable: true }] }).message).toContain('did you mean "mounts[0].writable"?')
  })
})

test('options that are not an object are refused', () => {
  expect(problemsOf('512M').message).toBe('[vitest-pool-isolated] option "(options)" must be an object; received "512M"')
  expect(problemsOf([1]).problems).toHaveLength(1)
})

describe('environment overrides', () => {
  test('each variable sets its option', () => {
    expect(
      resolveOptions(
        {},
        {
          VITEST_ISOLATED_MEMORY: '1G',
          VITEST_ISOLATED_CPUS: '0.5',
          VITEST_ISOLATED_PIDS: '128',
          VITEST_ISOLATED_TIMEOUT: '30000',
          VITEST_ISOLATED_NETWORK: 'none',
          VITEST_ISOLATED_REPORT: '/tmp/report.json',
        },
      ),
    ).toMatchObject({
      memoryBytes: GiB,
      cpus: 0.5,
      pids: 128,
      timeoutMs: 30000,
      network: 'none',
      reportFile: '/tmp/report.json',
    })
  })

  test('the environment beats the config', () => {
    const config: IsolatedOptions = { memory: '512M', cpus: 2, pids: 64, timeout: 1000, network: 'host', report: { file: '/a.json' } }
    expect(
      resolveOptions(config, {
        VITEST_ISOLATED_MEMORY: '2G',
        VITEST_ISOLATED_CPUS: '1',
        VITEST_ISOLATED_PIDS: '256',
        VITEST_ISOLATED_TIMEOUT: '5000',
        VITEST_ISOLATED_NETWORK: 'loopback',
        VITEST_ISOLATED_REPORT: '/b.json',
      }),
    ).toMatchObject({ memoryBytes: 2 * GiB, cpus: 1, pids: 256, timeoutMs: 5000, network: 'loopback', reportFile: '/b.json' })
  })

  test('the config applies when the variable is unset or empty', () => {
    expect(resolveOptions({ memory: '512M', network: 'host' }, { VITEST_ISOLATED_MEMORY: '', VITEST_ISOLATED_NETWORK: '  ' })).toMatchObject({
      memoryBytes: 512 * MiB,
      network: 'host',
    })
  })

  test('a bad variable names the variable and the option', () => {
    expect(problemsOf({}, { VITEST_ISOLATED_MEMORY: 'lots' }).message).toBe(
      '[vitest-pool-isolated] environment variable VITEST_ISOLATED_MEMORY (option "memory") must be a byte count greater than 0 or a size like \'512M\' or \'1G\'; received "lots"',
    )
  })

  test.each([
    ['VITEST_ISOLATED_CPUS', 'two', 'cpus'],
    ['VITEST_ISOLATED_CPUS', '0', 'cpus'],
    ['VITEST_ISOLATED_CPUS', '1e3', 'cpus'],
    ['VITEST_ISOLATED_PIDS', '1.5', 'pids'],
    ['VITEST_ISOLATED_PIDS', '0x10', 'pids'],
    ['VITEST_ISOLATED_TIMEOUT', '30s', 'timeout'],
    ['VITEST_ISOLATED_TIMEOUT', '-1', 'timeout'],
    ['VITEST_ISOLATED_NETWORK', 'bridge', 'network'],
  ])('%s=%s is refused', (variable, value, option) => {
    const error = problemsOf({}, { [variable]: value })
    expect(error.problems).toEqual([{ option, message: expect.stringContaining(`environment variable ${variable} (option "${option}")`) }])
    expect(error.message).toContain(`received ${JSON.stringify(value)}`)
  })

  test('a bad config value is reported even when the environment overrides it', () => {
    const error = problemsOf({ memory: 'lots' }, { VITEST_ISOLATED_MEMORY: '1G' })
    expect(error.problems.map(p => p.option)).toEqual(['memory'])
  })
})

test('every problem is collected into one error, listed', () => {
  const error = problemsOf(
    {
      memory: 'lots',
      cpus: 0,
      pids: 0.5,
      hostname: '-',
      mounts: [{ source: 'rel' }],
      colour: 'red',
    },
    { VITEST_ISOLATED_NETWORK: 'bridge' },
  )
  expect(error.problems.map(p => p.option).sort()).toEqual(['colour', 'cpus', 'hostname', 'memory', 'mounts[0].source', 'network', 'pids'])
  const lines = error.message.split('\n')
  expect(lines[0]).toBe('[vitest-pool-isolated] 7 problems with the options:')
  expect(lines.slice(1)).toHaveLength(7)
  for (const problem of error.problems) expect(lines).toContain(`  - ${problem.message}`)
})

describe('hostPorts', () => {
  test('ports and { port, host } entries; the environment adds to the config, sorted, one entry a port', () => {
    expect(resolveOptions({ hostPorts: [6379, { port: 5432, host: 'db.internal' }] }, {}).hostPorts).toEqual([
      { port: 5432, host: 'db.internal' },
      { port: 6379, host: '127.0.0.1' },
    ])
    expect(resolveOptions({ hostPorts: [6379] }, { VITEST_ISOLATED_HOST_PORTS: '5432, 6379@10.0.0.5' }).hostPorts).toEqual([
      { port: 5432, host: '127.0.0.1' },
      { port: 6379, host: '10.0.0.5' },
    ])
    expect(resolveOptions({ hostPorts: [80, 80] }, {}).hostPorts).toEqual([{ port: 80, host: '127.0.0.1' }])
  })

  test.each([
    [[0], 'hostPorts[0]', 'must be a port from 1 to 65535 or { port, host? }; received 0'],
    [[65536], 'hostPorts[0]', 'received 65536'],
    [[{ port: 1.5 }], 'hostPorts[0]', 'received {"port":1.5}'],
    [[{ port: 80, host: '' }], 'hostPorts[0].host', 'must name a host address or name'],
    [[{ port: 80, hots: 'x' }], 'hostPorts[0].hots', 'did you mean "hostPorts[0].host"?'],
    [
      [
        { port: 80, host: 'a' },
        { port: 80, host: 'b' },
      ],
      'hostPorts[1]',
      'forwards port 80 twice (to a and to b)',
    ],
    ['5432', 'hostPorts', 'must be an array of ports (1-65535) or { port, host? } entries'],
  ])('%j is refused', (value, option, text) => {
    const error = problemsOf({ hostPorts: value })
    expect(error.problems).toEqual([{ option, message: expect.stringContaining(text) }])
  })

  test('VITEST_ISOLATED_HOST_PORTS=db is refused naming the variable and the forms', () => {
    const error = problemsOf({}, { VITEST_ISOLATED_HOST_PORTS: '5432,db' })
    expect(error.problems).toEqual([
      {
        option: 'hostPorts',
        message:
          'environment variable VITEST_ISOLATED_HOST_PORTS (option "hostPorts") must be comma-separated ports or port@host entries, like \'5432,6379@10.0.0.5\'; received "5432,db"',
      },
    ])
  })

  test('needs the loopback network', () => {
    expect(problemsOf({ hostPorts: [80], network: 'none' }).problems[0].message).toContain("needs network 'loopback'")
    expect(problemsOf({ hostPorts: [80] }, { VITEST_ISOLATED_NETWORK: 'host' }).problems[0].message).toContain("network is 'host'")
  })
})

describe('audit and projectWrites', () => {
  test('defaults off and readonly; config and environment', () => {
    expect(resolveOptions({ audit: true, projectWrites: 'discard' }, {})).toMatchObject({ audit: true, projectWrites: 'discard' })
    expect(resolveOptions({ audit: true }, { VITEST_ISOLATED_AUDIT: '0' }).audit).toBe(false)
    expect(resolveOptions({}, { VITEST_ISOLATED_AUDIT: '1', VITEST_ISOLATED_PROJECT_WRITES: 'discard' })).toMatchObject({
      audit: true,
      projectWrites: 'discard',
    })
  })

  test('bad values are refused with the accepted forms', () => {
    expect(problemsOf({ audit: 'yes' }).problems).toEqual([{ option: 'audit', message: 'option "audit" must be true or false; received "yes"' }])
    expect(problemsOf({}, { VITEST_ISOLATED_AUDIT: 'maybe' }).problems).toEqual([
      {
        option: 'audit',
        message: 'environment variable VITEST_ISOLATED_AUDIT (option "audit") must be 1 or 0 (also true/false, yes/no, on/off); received "maybe"',
      },
    ])
    expect(problemsOf({ projectWrites: 'overlay' }).problems).toEqual([
      { option: 'projectWrites', message: 'option "projectWrites" must be one of \'readonly\', \'discard\'; received "overlay"' },
    ])
    expect(problemsOf({ projectWrite: 'discard' }).problems[0].message).toContain('did you mean "projectWrites"?')
  })
})

test('env names the schema library treats specially (__proto__, constructor, prototype) are kept, and checked', () => {
  const env = JSON.parse('{"constructor":"a","__proto__":"b","prototype":"c","X":"d"}') as Record<string, string>
  expect(Object.entries(resolveOptions({ env }, {}).env).sort()).toEqual([
    ['X', 'd'],
    ['__proto__', 'b'],
    ['constructor', 'a'],
    ['prototype', 'c'],
  ])
  expect(problemsOf({ env: JSON.parse('{"constructor":5}') }).problems).toEqual([
    { option: 'env.constructor', message: 'option "env.constructor" must be a string without NUL characters; received 5' },
  ])
})

describe('secrets', () => {
  test('pass: names from the config and from VITEST_ISOLATED_SECRETS_PASS, once each', () => {
    expect(resolveOptions({ secrets: { pass: ['NPM_TOKEN'] } }, { VITEST_ISOLATED_SECRETS_PASS: 'GITHUB_TOKEN, NPM_TOKEN' }).secretsPass).toEqual([
      'NPM_TOKEN',
      'GITHUB_TOKEN',
    ])
  })

  test.each([
    [{ pass: 'NPM_TOKEN' }, 'option "secrets.pass" must be an array of variable names'],
    [{ pass: ['A=B'] }, 'must be a variable name'],
    [{ let: ['NPM_TOKEN'] }, 'secrets'],
  ])('%o is refused', (secrets, message) => {
    expect(() => resolveOptions({ secrets } as never, {})).toThrow(message)
  })
})

describe('warnings (valid, but likely a mistake)', () => {
  test('an unknown VITEST_ISOLATED_* variable, with the nearest known one', () => {
    expect(resolveOptions({}, { VITEST_ISOLATED_MEMROY: '1G' }).warnings).toEqual([
      'environment variable VITEST_ISOLATED_MEMROY is not one the pool reads; did you mean VITEST_ISOLATED_MEMORY? (it is ignored)',
    ])
  })

  test("the pool's own variables for its processes, and other prefixes, are not warned about", () => {
    expect(resolveOptions({}, { VITEST_ISOLATED_WORKER_MODULE: '/x', VITEST_POOL_ID: '1', VITEST_ISOLATED_ZYGOTE: '1' }).warnings).toEqual([])
  })

  test("cpus above the machine's CPUs", () => {
    expect(resolveOptions({ cpus: 1000 }, {}).warnings).toEqual([
      expect.stringMatching(/^option "cpus" is 1000, more than the \d+ CPUs of this machine: the limit changes nothing here$/),
    ])
  })
})
