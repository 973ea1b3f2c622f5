/* mounts.c: init's mount steps, in the order init (init.c) calls them. Each fails its step
 * through fail_in_child and returns only on success. */
#ifndef ISOLATED_MOUNTS_H
#define ISOLATED_MOUNTS_H

#include "sandbox.h"

void make_private_in_child(void);
void pivot_to_base_in_child(void);
void mount_root_in_child(const struct plan *plan);
void run_ops_in_child(const struct plan *plan);
void detach_host_in_child(void);
void pivot_to_root_in_child(void);

#endif
