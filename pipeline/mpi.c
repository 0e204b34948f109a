/* The job's MPI world (mk_mpi.h). Built with MK_HAVE_MPI when CMake found MPI. */
#include "mk_mpi.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef MK_HAVE_MPI
#include <mpi.h>
#endif

static int g_rank = 0, g_size = 1, g_on = 0;
static int g_unjoined = 0; /* a build without MPI started as one of this many processes */

int mk_mpi_built(void)
{
#ifdef MK_HAVE_MPI
    return 1;
#else
    return 0;
#endif
}

const char *mk_mpi_library(void)
{
#ifdef MK_HAVE_MPI
    static char v[MPI_MAX_LIBRARY_VERSION_STRING];
    int n = 0;
    if (!v[0] && MPI_Get_library_version(v, &n) == MPI_SUCCESS) {
        v[strcspn(v, "\n")] = 0; /* the first line */
    }
    return v;
#else
    return NULL;
#endif
}

#ifdef MK_HAVE_MPI
/* Started by an MPI launcher: Open MPI's mpirun, or a PMI/PMIx launcher (Slurm's srun). */
static int launched(void)
{
    static const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        if (getenv(vars[i]))
            return 1;
    return 0;
}
#endif

int mk_mpi_init(int *argc, char ***argv)
{
#ifdef MK_HAVE_MPI
    if (!launched())
        return 0;
    if (MPI_Init(argc, argv) != MPI_SUCCESS) {
        fprintf(stderr, "pipeline: MPI_Init failed\n");
        return -1;
    }
    g_on = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
#else
    (void)argc;
    (void)argv;
    static const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0] && g_unjoined < 2; i++) {
        const char *n = getenv(vars[i]);
        g_unjoined = n ? atoi(n) : 0;
    }
#endif
    return 0;
}

int mk_mpi_unjoined(void)
{
    return g_unjoined > 1 ? g_unjoined : 0;
}

int mk_mpi_rank(void)
{
    return g_rank;
}

int mk_mpi_size(void)
{
    return g_size;
}

int mk_mpi_finish(int code)
{
#ifdef MK_HAVE_MPI
    if (g_on) {
        int all = code;
        fflush(stdout);
        fflush(stderr);
        MPI_Allreduce(&code, &all, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
        MPI_Finalize();
        g_on = 0;
        return all;
    }
#endif
    return code;
}

mk_status mk_mpi_gather_bytes(mk_ctx *ctx, const void *buf, size_t n, char **all, size_t **counts)
{
    *all = NULL;
    *counts = NULL;
    if (n > INT_MAX)
        return mk_err(ctx, MK_ERR_INVALID, "MPI gather: %zu bytes from one rank (at most %d)", n,
                      INT_MAX);
    int size = g_size, rank = g_rank;
    int *cnt = NULL, *disp = NULL;
    int me = (int)n;
    if (rank == 0) {
        cnt = calloc((size_t)size, sizeof *cnt);
        disp = calloc((size_t)size, sizeof *disp);
        *counts = calloc((size_t)size, sizeof **counts);
        if (!cnt || !disp || !*counts) {
            free(cnt);
            free(disp);
            free(*counts);
            *counts = NULL;
            return mk_err(ctx, MK_ERR_NOMEM, "out of memory");
        }
    }
#ifdef MK_HAVE_MPI
    if (g_on && MPI_Gather(&me, 1, MPI_INT, cnt, 1, MPI_INT, 0, MPI_COMM_WORLD) != MPI_SUCCESS) {
        free(cnt);
        free(disp);
        return mk_err(ctx, MK_ERR_IO, "MPI_Gather failed");
    }
#endif
    if (!g_on && rank == 0)
        cnt[0] = me;
    size_t total = 0;
    if (rank == 0) {
        for (int r = 0; r < size; r++) {
            if (total > (size_t)INT_MAX - (size_t)cnt[r]) {
                free(cnt);
                free(disp);
                free(*counts);
                *counts = NULL;
                return mk_err(ctx, MK_ERR_INVALID, "MPI gather: over %d bytes in all", INT_MAX);
            }
            disp[r] = (int)total;
            (*counts)[r] = (size_t)cnt[r];
            total += (size_t)cnt[r];
        }
        *all = malloc(total ? total : 1);
        if (!*all) {
            free(cnt);
            free(disp);
            free(*counts);
            *counts = NULL;
            return mk_err(ctx, MK_ERR_NOMEM, "out of memory");
        }
    }
    mk_status st = MK_OK;
#ifdef MK_HAVE_MPI
    if (g_on &&
        MPI_Gatherv(buf, me, MPI_BYTE, *all, cnt, disp, MPI_BYTE, 0, MPI_COMM_WORLD) != MPI_SUCCESS)
        st = mk_err(ctx, MK_ERR_IO, "MPI_Gatherv failed");
#endif
    if (!g_on && rank == 0 && n)
        memcpy(*all, buf, n);
    free(cnt);
    free(disp);
    if (st != MK_OK && rank == 0) {
        free(*all);
        free(*counts);
        *all = NULL;
        *counts = NULL;
    }
    return st;
}

int mk_mpi_max_int(int v)
{
#ifdef MK_HAVE_MPI
    if (g_on) {
        int all = v;
        MPI_Allreduce(&v, &all, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
        return all;
    }
#endif
    return v;
}

#ifdef MK_HAVE_MPI
static long long g_calls;
static double g_bytes;

static int dist_allgather(void *user, const void *mine, void *all, const size_t *counts, int ranks)
{
    (void)user;
    int cnt[1024], disp[1024];
    size_t total = 0;
    if (ranks > 1024)
        return -1;
    for (int r = 0; r < ranks; r++) {
        if (counts[r] > (size_t)INT_MAX || total > (size_t)INT_MAX - counts[r])
            return -1;
        cnt[r] = (int)counts[r];
        disp[r] = (int)total;
        total += counts[r];
    }
    g_calls++;
    g_bytes += (double)(total - counts[g_rank]);
    int ok = MPI_Allgatherv(mine, cnt[g_rank], MPI_BYTE, all, cnt, disp, MPI_BYTE,
                            MPI_COMM_WORLD) == MPI_SUCCESS;
    return ok ? 0 : -1;
}

static void dist_traffic(void *user, long long *calls, double *bytes)
{
    (void)user;
    *calls = g_calls;
    *bytes = g_bytes;
}

static int dist_max(void *user, int v)
{
    (void)user;
    g_calls++;
    g_bytes += (double)(g_size - 1) * sizeof(int);
    return mk_mpi_max_int(v);
}

static void dist_abort(void *user, int code, const char *msg)
{
    (void)user;
    fprintf(stderr, "error (rank %d of %d): %s\npipeline: stopping every rank of the job\n", g_rank,
            g_size, msg);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, code);
}
#endif

const mk_stage_dist *mk_mpi_dist(void)
{
#ifdef MK_HAVE_MPI
    static mk_stage_dist d;
    if (!g_on || g_size < 2)
        return NULL;
    d.share.ranks = g_size;
    d.share.rank = g_rank;
    d.share.allgather = dist_allgather;
    d.share.user = NULL;
    d.max_int = dist_max;
    d.abort = dist_abort;
    d.traffic = dist_traffic;
    return &d;
#else
    return NULL;
#endif
}
