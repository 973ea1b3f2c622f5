/* probe.c: doctor's and the tests' feature probes. */
#ifndef ISOLATED_PROBE_H
#define ISOLATED_PROBE_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Feature probe: clone3 with these CLONE_* flags and a child that exits at
 * once, made by isolated-init (as the sandbox's namespaces are: spawn.c). Returns 0 or an
 * errno. Creates nothing that outlives the call. */
int probe_clone(uint64_t flags);

#ifdef __cplusplus
}
#endif
#endif
