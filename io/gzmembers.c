/* The gzip member codec of .nii.gz (io/gzmembers.h): parallel compression into members that carry
 * their size, and the parallel whole-file decoder for them. */
#include "gzmembers.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#ifdef MK_HAVE_LIBDEFLATE
#include <libdeflate.h>
#endif

#define MK_GZ_HDR 20 /* our gzip member header: 10 bytes + XLEN + "MK" subfield (4 + 4 bytes) */

#ifdef MK_HAVE_LIBDEFLATE
static int64_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (int64_t)st.st_size : -1;
}
#endif

#ifdef MK_HAVE_LIBDEFLATE
static uint32_t get32le(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

typedef struct gz_member {
    size_t in_off, in_n, out_off, out_n;
} gz_member;

typedef struct gz_dec_job {
    const unsigned char *in;
    unsigned char *dst;
    const gz_member *mem;
    int nmem, first, step, err;
} gz_dec_job;

static void *gz_dec_run(void *arg)
{
    gz_dec_job *j = arg;
    struct libdeflate_decompressor *d = libdeflate_alloc_decompressor();
    j->err = d == NULL;
    for (int i = j->first; d && i < j->nmem && !j->err; i += j->step) {
        const gz_member *m = &j->mem[i];
        size_t got = 0;
        if (libdeflate_gzip_decompress(d, j->in + m->in_off, m->in_n, j->dst + m->out_off, m->out_n,
                                       &got) != LIBDEFLATE_SUCCESS ||
            got != m->out_n)
            j->err = 1;
    }
    libdeflate_free_decompressor(d);
    return NULL;
}

/* Members written by our writer carry their size ("MK" extra field): list them so they can be
 * inflated in parallel. Returns the member count, or 0 if the file is not made only of such
 * members covering exactly `want` bytes. */
static int scan_mk_members(const unsigned char *in, size_t n, size_t want, gz_member **out)
{
    *out = NULL;
    size_t pos = 0, opos = 0;
    int cnt = 0, cap = 0;
    gz_member *m = NULL;
    while (pos < n) {
        if (n - pos < MK_GZ_HDR + 8 || in[pos] != 0x1f || in[pos + 1] != 0x8b || in[pos + 2] != 8 ||
            in[pos + 3] != 4 || in[pos + 10] != 8 || in[pos + 11] != 0 || in[pos + 12] != 'M' ||
            in[pos + 13] != 'K' || in[pos + 14] != 4 || in[pos + 15] != 0)
            goto no;
        size_t sz = get32le(in + pos + 16);
        if (sz < MK_GZ_HDR + 8 || sz > n - pos)
            goto no;
        size_t isz = get32le(in + pos + sz - 4);
        if (cnt == cap) {
            cap = cap ? 2 * cap : 64;
            gz_member *x = realloc(m, (size_t)cap * sizeof *m);
            if (!x)
                goto no;
            m = x;
        }
        m[cnt++] = (gz_member){pos, sz, opos, isz};
        pos += sz;
        opos += isz;
        if (opos > want)
            goto no;
    }
    if (opos != want)
        goto no;
    *out = m;
    return cnt;
no:
    free(m);
    return 0;
}

/* Whole-file gzip decode with libdeflate (2-3x faster than zlib's inflate): the compressed file is
 * read into memory; our own multi-member files are inflated by two threads, any other gzip member
 * by member. dst receives `want` bytes (header + voxels). Returns 0 on success, -1 when this path
 * cannot decode the file; the caller then falls back to the zlib stream reader, which also
 * produces the precise error message. */
int mk__gz_read_fast(const char *iname, unsigned char *dst, size_t want)
{
    int64_t fs = file_size(iname);
    if (fs <= 0 || fs > ((int64_t)1 << 31))
        return -1;
    FILE *f = fopen(iname, "rb");
    if (!f)
        return -1;
    unsigned char *in = malloc((size_t)fs);
    int rc = -1;
    if (in && fread(in, 1, (size_t)fs, f) == (size_t)fs) {
        gz_member *mem = NULL;
        int nm = scan_mk_members(in, (size_t)fs, want, &mem);
        if (nm > 1) {
            enum { T = 2 };
            gz_dec_job jobs[T];
            pthread_t tid[T];
            int started[T] = {0};
            for (int t = 0; t < T; t++)
                jobs[t] = (gz_dec_job){in, dst, mem, nm, t, T, 0};
            for (int t = 1; t < T; t++)
                started[t] = pthread_create(&tid[t], NULL, gz_dec_run, &jobs[t]) == 0;
            gz_dec_run(&jobs[0]);
            int err = jobs[0].err;
            for (int t = 1; t < T; t++) {
                if (started[t])
                    pthread_join(tid[t], NULL);
                else
                    gz_dec_run(&jobs[t]);
                err |= jobs[t].err;
            }
            rc = err ? -1 : 0;
        } else {
            struct libdeflate_decompressor *d = libdeflate_alloc_decompressor();
            size_t ipos = 0, opos = 0;
            while (d && opos < want && ipos < (size_t)fs) {
                size_t used_in = 0, got = 0;
                enum libdeflate_result r = libdeflate_gzip_decompress_ex(
                    d, in + ipos, (size_t)fs - ipos, dst + opos, want - opos, &used_in, &got);
                if (r != LIBDEFLATE_SUCCESS)
                    break;
                ipos += used_in;
                opos += got;
            }
            if (opos == want)
                rc = 0;
            libdeflate_free_decompressor(d);
        }
        free(mem);
    }
    free(in);
    fclose(f);
    return rc;
}
#endif

/* Parallel gzip. The data are cut into 4 MiB chunks compressed by `threads` workers and written in
 * order. With libdeflate (faster than zlib at the same ratio) each chunk is a complete gzip member;
 * without it, each chunk is raw-deflated with zlib and ended with a sync flush (the last with
 * Z_FINISH) so the concatenation is one deflate stream in one member, CRCs combined. Either way
 * any gzip reader decodes the file to exactly the input bytes. */
#define GZ_CHUNK ((size_t)4 << 20)

#ifdef MK_HAVE_LIBDEFLATE /* the member headers and trailers; zlib's single member needs none */
static void put32le(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}
#endif

typedef struct gz_job {
    const unsigned char *in;
    size_t n;
    int last, level;
    unsigned char *out;
    size_t out_n, out_cap;
    uLong crc;
    int err;
} gz_job;

static void *gz_job_run(void *arg)
{
    gz_job *j = arg;
#ifdef MK_HAVE_LIBDEFLATE
    /* One complete gzip member per chunk (a multi-member file, valid per RFC 1952 and read by
     * zlib, niftilib, nibabel and ITK). The member header carries an extra field "MK" with the
     * member's total size (like BGZF's "BC"), which lets our reader inflate members in parallel;
     * other readers skip unknown extra fields. */
    struct libdeflate_compressor *c = libdeflate_alloc_compressor(j->level);
    j->err = 1;
    if (!c)
        return NULL;
    size_t need = libdeflate_deflate_compress_bound(c, j->n) + MK_GZ_HDR + 8 + 64;
    if (need > j->out_cap) {
        free(j->out);
        j->out = malloc(need);
        j->out_cap = j->out ? need : 0;
    }
    if (j->out) {
        size_t cs = libdeflate_deflate_compress(c, j->in, j->n, j->out + MK_GZ_HDR,
                                                j->out_cap - MK_GZ_HDR - 8);
        if (cs > 0 && cs + MK_GZ_HDR + 8 <= 0xffffffffu) {
            size_t total = MK_GZ_HDR + cs + 8;
            unsigned char *h = j->out;
            static const unsigned char H[16] = {0x1f, 0x8b, 8, 4, 0,   0,   0, 0,
                                                0,    3,    8, 0, 'M', 'K', 4, 0};
            memcpy(h, H, 16);
            put32le(h + 16, (uint32_t)total);
            put32le(h + MK_GZ_HDR + cs, (uint32_t)libdeflate_crc32(0, j->in, j->n));
            put32le(h + MK_GZ_HDR + cs + 4, (uint32_t)(j->n & 0xffffffffu));
            j->out_n = total;
            j->err = 0;
        }
    }
    libdeflate_free_compressor(c);
    return NULL;
#else
    z_stream z;
    memset(&z, 0, sizeof z);
    j->err = 0;
    if (deflateInit2(&z, j->level, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
        j->err = 1;
        return NULL;
    }
    size_t need = deflateBound(&z, (uLong)j->n) + 64;
    if (need > j->out_cap) {
        free(j->out);
        j->out = malloc(need);
        j->out_cap = j->out ? need : 0;
    }
    if (!j->out) {
        deflateEnd(&z);
        j->err = 1;
        return NULL;
    }
    z.next_in = (Bytef *)j->in;
    z.avail_in = (uInt)j->n;
    z.next_out = j->out;
    z.avail_out = (uInt)j->out_cap;
    int rc = deflate(&z, j->last ? Z_FINISH : Z_SYNC_FLUSH);
    if ((j->last && rc != Z_STREAM_END) || (!j->last && rc != Z_OK) || z.avail_in != 0)
        j->err = 1;
    j->out_n = j->out_cap - z.avail_out;
    deflateEnd(&z);
    j->crc = crc32(0L, j->in, (uInt)j->n);
    return NULL;
#endif
}

static int put_le32(FILE *f, uint32_t v)
{
    unsigned char b[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 24)};
    return fwrite(b, 1, 4, f) == 4;
}

mk_status mk__gz_write(mk_ctx *ctx, const char *path, FILE *f, int level, int threads,
                       const void *head, size_t head_n, const void *data, size_t data_n)
{
#ifdef MK_HAVE_LIBDEFLATE
    const int members = 1;
#else
    const int members = 0;
    static const unsigned char GZH[10] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3};
    if (fwrite(GZH, 1, 10, f) != 10)
        return mk_err(ctx, MK_ERR_IO, "%s: write failed: %s", path, strerror(errno));
#endif
    if (threads < 1)
        threads = 1;
    if (threads > 16)
        threads = 16;
    gz_job jobs[16];
    memset(jobs, 0, sizeof jobs);
    uLong crc = crc32(0L, Z_NULL, 0);
    mk_status st = MK_OK;
    /* the header is compressed as the first (small) chunk */
    const unsigned char *parts[2] = {head, data};
    size_t lens[2] = {head_n, data_n};
    size_t pos[2] = {0, 0};
    int p = 0;
    while (st == MK_OK) {
        int nj = 0;
        while (nj < threads && p < 2) {
            if (pos[p] >= lens[p]) {
                p++;
                continue;
            }
            size_t n = lens[p] - pos[p] > GZ_CHUNK ? GZ_CHUNK : lens[p] - pos[p];
            jobs[nj].in = parts[p] + pos[p];
            jobs[nj].n = n;
            jobs[nj].level = level;
            pos[p] += n;
            nj++;
        }
        /* is this batch's last job the end of all data? */
        int end = 1;
        for (int q = p; q < 2; q++)
            if (pos[q] < lens[q])
                end = 0;
        for (int i = 0; i < nj; i++)
            jobs[i].last = end && i == nj - 1;
        if (nj == 0) {
            /* empty input: emit an empty final block */
            jobs[0].in = (const unsigned char *)"";
            jobs[0].n = 0;
            jobs[0].last = 1;
            jobs[0].level = level;
            nj = 1;
            end = 1;
        }
        pthread_t tid[16];
        int started[16] = {0};
        for (int i = 1; i < nj; i++)
            started[i] = pthread_create(&tid[i], NULL, gz_job_run, &jobs[i]) == 0;
        gz_job_run(&jobs[0]);
        for (int i = 1; i < nj; i++) {
            if (started[i])
                pthread_join(tid[i], NULL);
            else
                gz_job_run(&jobs[i]);
        }
        for (int i = 0; i < nj && st == MK_OK; i++) {
            if (jobs[i].err)
                st =
                    mk_err(ctx, MK_ERR_NOMEM, "%s: gzip compression failed (out of memory?)", path);
            else if (fwrite(jobs[i].out, 1, jobs[i].out_n, f) != jobs[i].out_n)
                st = mk_err(ctx, MK_ERR_IO, "%s: write failed: %s", path, strerror(errno));
            crc = crc32_combine(crc, jobs[i].crc, (z_off_t)jobs[i].n);
        }
        if (end)
            break;
    }
    for (int i = 0; i < 16; i++)
        free(jobs[i].out);
    if (st != MK_OK || members)
        return st;
    if (!put_le32(f, (uint32_t)crc) || !put_le32(f, (uint32_t)((head_n + data_n) & 0xffffffffu)))
        return mk_err(ctx, MK_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    return MK_OK;
}
