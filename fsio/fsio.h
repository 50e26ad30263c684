/* fsio — careful file-system work shared by the stores and the command line:
 * one writer per store, output files that appear whole or not at all, the
 * permissions of files that hold pods' payloads, and what a file system has left.
 *
 * Threads: every function may be called from any thread; a fsio_lock or
 * fsio_output belongs to one thread at a time.  Errors: 0 or a negative errno,
 * with a message in errbuf where one is taken.  libc only.
 */
#ifndef PODCAP_FSIO_H
#define PODCAP_FSIO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* ---- one writer per store ---- */

/* An exclusive advisory lock (flock) on path (a file or a directory), held until
 * fsio_unlock or the process ends (a killed writer leaves no stale lock).  what
 * names the store in messages ("flow database /var/lib/podcap/flows.db").  When another
 * process holds it: -EBUSY and a message naming that process's pid and command
 * line.  Readers do not take it. */
struct fsio_lock;
int fsio_lock(const char *path, const char *what, struct fsio_lock **out, char *errbuf, size_t errlen);
void fsio_unlock(struct fsio_lock *l);
/* The pid holding an flock on path, 0 if none is seen (from /proc/locks). */
pid_t fsio_lock_holder(const char *path);

/* ---- output files ---- */

/* A file written under a temporary name in the same directory and renamed into
 * place by fsio_output_commit: an export that fails leaves the existing file as
 * it was, and a reader never sees half a file.  The final path must not be a
 * symbolic link (refused: a privileged writer must not be steered to overwrite
 * another file); "-" means standard output (no rename; a terminal is refused by
 * the caller).  An existing named pipe or character device (a FIFO Wireshark
 * reads, /dev/null) is written in place, as standard output is: there is no
 * file to keep.  Anything else that is not a regular file is refused.  mode is
 * the new file's (e.g. 0640).
 *
 *   struct fsio_output *o;
 *   if (fsio_output_open(path, FSIO_FILE_MODE, &o, err, sizeof(err)) < 0)
 *           ... say err, exit 1 ...
 *   w = pn_open_fd(fsio_output_fd(o), &cfg);      (without PN_OWN_FD: o owns the fd)
 *   ... write; pn_close(w) ...
 *   if it went well:  fsio_output_commit(o, err, sizeof(err))   (frees o in every case)
 *   else:             fsio_output_abort(o)                      (the old file stays)
 *
 * A process killed before either leaves the temporary ".NAME.tmp-XXXXXX" beside
 * the final path (never the final path half-written). */
struct fsio_output;
int fsio_output_open(const char *path, mode_t mode, struct fsio_output **out, char *errbuf, size_t errlen);
int fsio_output_fd(const struct fsio_output *o);
/* Flushes to disk and renames into place; then frees.  On failure the
 * temporary file is removed and the old file stays. */
int fsio_output_commit(struct fsio_output *o, char *errbuf, size_t errlen);
/* Removes the temporary file and frees; o may be NULL. */
void fsio_output_abort(struct fsio_output *o);

/* ---- permissions ---- */

/* The group that may read what podcap writes (databases, stores, exports hold
 * pods' payloads): files are made 0640 and directories 0750, owned by this group
 * when set (a name or a number), else the process's.  Set once at start-up, from
 * --group or PODCAP_GROUP. -ENOENT for an unknown group. */
int fsio_set_group(const char *group, char *errbuf, size_t errlen);
#define FSIO_FILE_MODE 0640
#define FSIO_DIR_MODE 0750
/* Applies the group (if one is set) and the mode to an open fd / a path; errors
 * are returned, not fatal for callers that can go on. */
int fsio_own_fd(int fd, mode_t mode);
int fsio_own_path(const char *path, mode_t mode);
/* Creates path (a regular file) if it does not exist, with FSIO_FILE_MODE and the
 * group, so that a library that creates files with its own mode (SQLite: 0644)
 * finds it there.  0 also when it existed. */
int fsio_precreate(const char *path);

/* ---- space ---- */

/* Bytes a directory's file system still lets an unprivileged writer use. */
int fsio_free_bytes(const char *dir, uint64_t *out);
/* Bytes the files under dir take on disk (st_blocks, as du counts them), walking
 * one level of sub-directories at most; what cannot be stat'ed is skipped. */
uint64_t fsio_dir_bytes(const char *dir);

#endif
