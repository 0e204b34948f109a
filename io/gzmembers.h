/* The gzip member codec of .nii.gz (internal to io/, not installed).
 *
 * Writing: the header and the voxels are cut into 4 MiB chunks compressed by `threads` workers
 * and written in order. With libdeflate each chunk is one complete gzip member whose header
 * carries an extra field "MK" with the member's total size (as BGZF's "BC"); without it the
 * chunks form one deflate stream in one member. Any gzip reader decodes the file to exactly the
 * input bytes.
 * Reading (libdeflate only): our own multi-member files are inflated by two threads; any other
 * gzip file member by member. */
#ifndef MK_GZMEMBERS_H
#define MK_GZMEMBERS_H

#include <stddef.h>
#include <stdio.h>

#include "../core/mk_status.h"

/* gzip of head followed by data, written to f (path names it in messages). */
mk_status mk__gz_write(mk_ctx *ctx, const char *path, FILE *f, int level, int threads,
                       const void *head, size_t head_n, const void *data, size_t data_n);

#ifdef MK_HAVE_LIBDEFLATE
/* Decode the whole gzip file `iname` into dst (exactly `want` bytes). 0 on success, -1 when this
 * path cannot decode it (the caller falls back to zlib, which gives the precise error). */
int mk__gz_read_fast(const char *iname, unsigned char *dst, size_t want);
#endif

#endif
