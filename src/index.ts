export { isolated, isolatedPool } from './plugin.js'
export { exposeHostPort } from './run/host-ports.js'
export type {
  IsolatedOptions,
  IsolatedMount,
  IsolatedBindMount,
  IsolatedTmpfsMount,
  IsolatedNetwork,
  IsolatedHostPort,
  IsolatedProjectWrites,
} from './options/index.js'
export {
  IsolatedError,
  IsolatedOptionsError,
  ProtocolError,
  SandboxSetupError,
  SandboxUnsupportedError,
} from './errors.js'
