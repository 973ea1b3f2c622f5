/* Snapshot file operations for Vitest main (host side, main thread, never in
 * a sandbox): each resolves a relative path below a base directory without
 * following a symbolic link at any component (openat2, see beneath.c). */
#ifndef ISOLATED_BENEATH_H
#define ISOLATED_BENEATH_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Where a failed operation stopped: errno first, then the call and how many
 * bytes of the relative path name the component it failed on (the whole path
 * when it failed at the last one; 0 for the base directory itself). */
struct beneath_error {
  int err;
  const char *syscall;
  size_t path_len;
};

/* Each returns 0, or -1 with *e filled in. rel is relative to base, made of
 * plain components (no "", ".", ".."); base is opened as given. */

/* mkdir -p rel below base, component by component. */
int beneath_mkdirs(const char *base, const char *rel, struct beneath_error *e);

/* Writes data as the file rel: a fresh temporary file in rel's directory,
 * renamed onto the name, so the name itself is never opened. The directory
 * must exist. An existing regular file keeps its mode (and owner, when we may);
 * an existing symbolic link is refused (ELOOP), a directory cannot be replaced. */
int beneath_write(const char *base, const char *rel, const char *data, size_t len, struct beneath_error *e);

/* Removes the regular file rel; a missing one is fine, anything else but a
 * regular file is refused (ELOOP for a link, EISDIR/EPERM otherwise). */
int beneath_remove(const char *base, const char *rel, struct beneath_error *e);

#ifdef __cplusplus
}
#endif

#endif
