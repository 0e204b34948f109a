/* mk_mpi: the job's MPI world (issue 22; docs/scaling.md).
 *
 * medkd is built with MPI when CMake finds it (option MK_MPI, on by default; `pipeline version`
 * says which). A process joins an MPI world only when an MPI launcher started it (mpirun, srun:
 * the launcher's rank variables are set); otherwise, and in a build without MPI, the world is
 * this one process: rank 0 of 1, and every collective below is a no-op or a copy.
 *
 *     mk_mpi_init(&argc, &argv);          first thing in main
 *     ... mk_mpi_rank(), mk_mpi_size() ...
 *     code = mk_mpi_finish(code);         last: every rank exits with the largest code
 *
 * Every collective must be called by every rank, in the same order. */
#ifndef MK_MPI_H
#define MK_MPI_H

#include <stddef.h>

#include "core/mk_status.h"
#include "stages/mk_stages.h"

#ifdef __cplusplus
extern "C" {
#endif

/* 1 when this binary was built with MPI. */
int mk_mpi_built(void);
/* The MPI library's version line ("Open MPI v4.1.4, ..."), or NULL without MPI. Static. */
const char *mk_mpi_library(void);
/* Joins the launcher's MPI world when there is one (0), or stays a world of one (0); -1 when
 * MPI_Init failed (message on stderr). */
int mk_mpi_init(int *argc, char ***argv);
/* In a build without MPI: the process count of the launcher that started this process when it
 * is more than one (each would run the whole job alone), else 0. Always 0 with MPI. */
int mk_mpi_unjoined(void);
/* Rank and size of the world (0 and 1 outside MPI). */
int mk_mpi_rank(void);
int mk_mpi_size(void);
/* The largest exit code over the ranks (a collective), then MPI_Finalize; returns it. */
int mk_mpi_finish(int code);
/* Gathers every rank's n bytes at rank 0: there *all (malloc'd; caller frees) holds the ranks'
 * buffers in rank order and counts[r] (malloc'd, size() entries) their lengths; elsewhere both
 * are NULL. */
mk_status mk_mpi_gather_bytes(mk_ctx *ctx, const void *buf, size_t n, char **all, size_t **counts);

/* The world as data-parallel training sees it (allgather, max, abort over MPI_COMM_WORLD), or
 * NULL in a world of one. Static. */
const mk_stage_dist *mk_mpi_dist(void);
/* The largest v over the ranks (a collective; v itself in a world of one). */
int mk_mpi_max_int(int v);

#ifdef __cplusplus
}
#endif

#endif
