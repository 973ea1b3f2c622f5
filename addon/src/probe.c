/* Side-effect-free feature probes: each creates at most a child that exits at
 * once and is reaped before returning. The namespaces are probed the way the
 * sandbox makes them: by isolated-init (spawn.c), which an AppArmor policy may
 * allow where node is not. */
#include <errno.h>

#include "probe.h"
#include "sandbox.h"
#include "spawn.h"

int probe_clone(uint64_t flags) {
  int r = sandbox_probe(flags);
  return r < 0 ? errno : r;
}
