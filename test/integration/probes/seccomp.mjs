// Runs INSIDE a sandbox: hands the syscall numbers to python3 (ctypes) and relays its answer.
import { execFileSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
const script = fileURLToPath(new URL('./syscalls.py', import.meta.url))
process.stdout.write(execFileSync('/usr/bin/python3', [script, process.env.SYSCALLS], { encoding: 'utf8' }))
