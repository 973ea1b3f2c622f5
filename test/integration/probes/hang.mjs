// Runs INSIDE a sandbox: waits forever, exits 42 on SIGTERM (proves init forwards it).
process.on('SIGTERM', () => process.exit(42))
process.stdout.write('ready\n')
setInterval(() => {}, 1 << 30)
