/* medkd core: file helpers shared by every writer.
 *
 * Atomic output: write to the temporary named by mk_fs_tmp_path, then mk_fs_commit moves it into
 * place. On failure call mk_fs_discard so no half written file is ever left under the final name.
 * mk_fs_write_atomic(_printed) do the three steps for bytes in memory. What PATH is decides where
 * the bytes go (checked with lstat by mk_fs_tmp_path and again by mk_fs_commit):
 *   - absent or a regular file: the temporary is `PATH.tmp.<pid>` (same directory, so rename(2)
 *     is atomic) and is renamed over PATH;
 *   - a symlink to a regular file: the same on the file it resolves to (realpath), so the target
 *     is replaced atomically and the link stays a link;
 *   - a FIFO or a character device (/dev/null, a tty), or a symlink to one: never renamed over;
 *     it is opened for writing (no create, no truncate) and the bytes are written into it (a FIFO
 *     waits for its reader); writers' temporaries go to a private mkstemp file in $TMPDIR (or /tmp)
 *     that mk_fs_commit copies in and removes;
 *   - "-", /dev/stdout, /dev/stderr, /dev/fd/N and /proc/self/fd/N: the open descriptor (1, 2, N)
 *     itself, written where it stands after stdio's buffer is flushed (what `>` or a pipe gave
 *     the process), through the same private temporary;
 *   - anything else (a directory, a block device, a socket, a symlink to one of those, a symlink
 *     that resolves to nothing) is refused with MK_ERR_IO and "PATH: not a regular file (a
 *     directory): refusing to replace it; ..."; nothing is created or replaced.
 * Only the regular-file cases are atomic: a stream receives its bytes once the output is complete
 * but can see a partial write if writing fails half way. */
#ifndef MK_FS_H
#define MK_FS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "mk_status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Writes the temporary's name for path into buf (size n): "PATH.tmp.PID", "REAL.tmp.PID" for a
 * symlink to the regular file REAL, a new private file for a stream (rule above). Returns
 * MK_ERR_INVALID if it does not fit, MK_ERR_IO for a target that is refused. */
mk_status mk_fs_tmp_path(mk_ctx *ctx, const char *path, char *buf, size_t n);
/* Moves the finished tmp into place by the rule above (rename, or copy into a stream); tmp is
 * gone afterwards either way. Errors name path. */
mk_status mk_fs_commit(mk_ctx *ctx, const char *tmp, const char *path);
/* Write `len` bytes to path atomically (temp file, then rename; streams written directly);
 * errors name path. */
mk_status mk_fs_write_atomic(mk_ctx *ctx, const char *path, const void *data, size_t len);
/* The same for text made by a printer: print(out, arg) writes into a memory stream, which is then
 * written atomically to path. */
mk_status mk_fs_write_atomic_printed(mk_ctx *ctx, const char *path,
                                     void (*print)(FILE *out, const void *arg), const void *arg);
/* 1 if an output named path goes to standard output by the rule above ("-", /dev/stdout,
 * /dev/fd/1, /proc/self/fd/1), so a command can keep its own printing off that stream. */
int mk_fs_is_stdout(const char *path);
/* unlink(tmp), ignoring errors. */
void mk_fs_discard(const char *tmp);
/* mkdir -p. */
mk_status mk_fs_mkdirs(mk_ctx *ctx, const char *dir);
/* 1 if a regular file / directory exists at path. */
int mk_fs_is_file(const char *path);
int mk_fs_is_dir(const char *path);
/* Read a whole file into a NUL-terminated malloc'd buffer (caller frees). */
mk_status mk_fs_read_all(mk_ctx *ctx, const char *path, char **out, size_t *len);
/* Join dir and rel unless rel is absolute; result into buf. */
mk_status mk_fs_join(mk_ctx *ctx, const char *dir, const char *rel, char *buf, size_t n);
/* Directory part of path ("." when none) into buf. */
void mk_fs_dirname(const char *path, char *buf, size_t n);

/* JSON strings, the one escaper of the project's JSON writers: '"' and '\\' escaped, '\n' and
 * '\t' as \n and \t, other control characters as \u00XX, bytes >= 0x20 as they are (UTF-8 kept).
 * mk_json_put writes the quoted string (s NULL: ""); mk_json_escape writes the body into buf
 * (n bytes, truncated at a character boundary, always NUL-terminated). */
void mk_json_put(FILE *f, const char *s);

/* FNV-1a, 64 bits, over n bytes, continuing from h (start with MK_FNV1A_OFFSET): the one content
 * hash of the project (resume provenance, model and mask checksums, the hold-out order). */
#define MK_FNV1A_OFFSET 14695981039346656037ULL
uint64_t mk_fnv1a(uint64_t h, const void *data, size_t n);
void mk_json_escape(const char *s, char *buf, size_t n);

#ifdef __cplusplus
}
#endif
#endif
