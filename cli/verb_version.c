#include <cblas.h>
#include <hdf5.h>
#include <nifti2_io.h>
#include <stdio.h>
#include <tiffio.h>

#include "../pipeline/mk_mpi.h"
#include "mk_verbs.h"

#ifndef MK_VERSION
#define MK_VERSION "unknown"
#endif

char *openblas_get_config(void);

mk_status mk_verb_version(mk_cli *cli, int argc, char **argv)
{
    if (argc > 1)
        return mk_err(cli->ctx, MK_ERR_USAGE, "version: takes no arguments");
    unsigned maj, min, rel;
    H5get_libversion(&maj, &min, &rel);
    printf("medkd %s\n", MK_VERSION);
    printf("  niftilib  nifti2 (NIfTI-1 and NIfTI-2)\n");
    printf("  hdf5      %u.%u.%u\n", maj, min, rel);
    const char *tv = TIFFGetVersion();
    int tl = 0;
    while (tv[tl] && tv[tl] != '\n')
        tl++;
    printf("  libtiff   %.*s\n", tl, tv);
    printf("  openblas  %s\n", openblas_get_config());
    if (mk_mpi_built())
        printf("  mpi       %s (this process: rank %d of %d)\n", mk_mpi_library(), mk_mpi_rank(),
               mk_mpi_size());
    else
        printf("  mpi       not built in (one process; rebuild with libopenmpi-dev)\n");
    return MK_OK;
}
