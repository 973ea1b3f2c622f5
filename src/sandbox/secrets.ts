/**
 * Credentials of CI systems and clouds that Vitest's environment carries and no test needs: a
 * test cannot reach the network, but it can print one into a log or write it into a snapshot
 * that main commits to the tree. Workers do not get these unless the config passes them through
 * (`secrets: { pass: [...] }`, or by setting them itself in `env` or Vitest's `test.env`).
 * bubblewrap (`--clearenv`), nsjail and Bazel (`--incompatible_strict_action_env`) control the
 * environment of what they run the same way.
 */

/** Withheld by default, by exact name. README lists them. */
export const WITHHELD_ENV: readonly string[] = [
  // GitHub Actions: the runtime token (caches, artifacts), the OIDC token request, the API token
  'ACTIONS_RUNTIME_TOKEN',
  'ACTIONS_ID_TOKEN_REQUEST_TOKEN',
  'ACTIONS_ID_TOKEN_REQUEST_URL',
  'GITHUB_TOKEN',
  'GH_TOKEN',
  // GitLab CI
  'CI_JOB_TOKEN',
  'CI_JOB_JWT',
  'CI_JOB_JWT_V1',
  'CI_JOB_JWT_V2',
  'CI_REGISTRY_PASSWORD',
  'CI_DEPLOY_PASSWORD',
  'GITLAB_TOKEN',
  // Registries
  'NPM_TOKEN',
  'NODE_AUTH_TOKEN',
  'YARN_NPM_AUTH_TOKEN',
  'DOCKER_AUTH_CONFIG',
  'DOCKER_PASSWORD',
  // AWS, Google Cloud, Azure
  'AWS_ACCESS_KEY_ID',
  'AWS_SECRET_ACCESS_KEY',
  'AWS_SESSION_TOKEN',
  'GOOGLE_APPLICATION_CREDENTIALS',
  'GOOGLE_CREDENTIALS',
  'GOOGLE_OAUTH_ACCESS_TOKEN',
  'CLOUDSDK_AUTH_ACCESS_TOKEN',
  'AZURE_CLIENT_SECRET',
  'AZURE_CLIENT_CERTIFICATE_PASSWORD',
  'ARM_CLIENT_SECRET',
  'ARM_ACCESS_KEY',
  // The SSH agent of whoever started the run
  'SSH_AUTH_SOCK',
  // Services CI jobs commonly hold keys of
  'CODECOV_TOKEN',
  'COVERALLS_REPO_TOKEN',
  'SONAR_TOKEN',
  'SNYK_TOKEN',
  'SENTRY_AUTH_TOKEN',
  'VERCEL_TOKEN',
  'NETLIFY_AUTH_TOKEN',
  'CLOUDFLARE_API_TOKEN',
  'HEROKU_API_KEY',
  'BUILDKITE_AGENT_ACCESS_TOKEN',
]

const WITHHELD = new Set(WITHHELD_ENV)

/**
 * The worker's environment without the withheld names, except those in `pass`. Returns the
 * environment and the names it left out (sorted).
 */
export function withholdSecrets<T extends string | undefined>(
  env: Record<string, T>,
  pass: ReadonlySet<string>,
): { env: Record<string, T>; withheld: string[] } {
  const out: Record<string, T> = {}
  const withheld: string[] = []
  for (const [name, value] of Object.entries(env)) {
    if (WITHHELD.has(name) && !pass.has(name) && value !== undefined) withheld.push(name)
    else out[name] = value
  }
  return { env: out, withheld: withheld.sort() }
}
