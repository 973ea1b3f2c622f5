import { expect, test } from 'vitest'
import { WITHHELD_ENV, withholdSecrets } from '../../src/sandbox/secrets.js'

test('CI credentials are left out, and named; everything else stays', () => {
  const { env, withheld } = withholdSecrets({ PATH: '/bin', NPM_TOKEN: 'x', ACTIONS_RUNTIME_TOKEN: 'y', HOME: '/root' }, new Set())
  expect(env).toEqual({ PATH: '/bin', HOME: '/root' })
  expect(withheld).toEqual(['ACTIONS_RUNTIME_TOKEN', 'NPM_TOKEN'])
})

test('a name in pass stays, and an unset one is not named', () => {
  const { env, withheld } = withholdSecrets({ NPM_TOKEN: 'x', GITHUB_TOKEN: undefined, AWS_SECRET_ACCESS_KEY: 'k' }, new Set(['NPM_TOKEN']))
  expect(env).toEqual({ NPM_TOKEN: 'x', GITHUB_TOKEN: undefined })
  expect(withheld).toEqual(['AWS_SECRET_ACCESS_KEY'])
})

test('the documented list covers what the issue names', () => {
  for (const name of [
    'ACTIONS_RUNTIME_TOKEN',
    'ACTIONS_ID_TOKEN_REQUEST_TOKEN',
    'NPM_TOKEN',
    'NODE_AUTH_TOKEN',
    'CI_JOB_TOKEN',
    'AWS_SECRET_ACCESS_KEY',
    'SSH_AUTH_SOCK',
  ]) {
    expect(WITHHELD_ENV).toContain(name)
  }
})
