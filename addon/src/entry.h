/* entry.c: PLAN_ENTER, init's side of a zygote's copy entering the finished sandbox. */
#ifndef ISOLATED_ENTRY_H
#define ISOLATED_ENTRY_H

#include "init.h"

int listen_entry_in_child(void);
void hand_fds_to_entry_in_child(int listener, const struct child_fds *fds);

#endif
