/* medkd core: file helpers shared by every writer.
 *
 * Atomic output: write to `PATH.tmp.<pid>` obtained from mk_fs_tmp_path, then mk_fs_commit renames
 * it over PATH (same directory, so rename(2) is atomic). On failure call mk_fs_discard so no half
 * written file is ever left under the final name. */
#ifndef MK_FS_H
#define MK_FS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "mk_status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Writes "PATH.tmp.PID" into buf (size n). Returns MK_ERR_INVALID if it does not fit. */
mk_status mk_fs_tmp_path(mk_ctx *ctx, const char *path, char *buf, size_t n);
/* rename(tmp, path); on failure removes tmp and records an error naming path. */
mk_status mk_fs_commit(mk_ctx *ctx, const char *tmp, const char *path);
/* Write `len` bytes to path atomically (temp file, then rename); errors name path. */
mk_status mk_fs_write_atomic(mk_ctx *ctx, const char *path, const void *data, size_t len);
/* The same for text made by a printer: print(out, arg) writes into a memory stream, which is then
 * written atomically to path. */
mk_status mk_fs_write_atomic_printed(mk_ctx *ctx, const char *path,
                                     void (*print)(FILE *out, const void *arg), const void *arg);
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
