# `pipeline infer` (issue 17): geometry against nibabel on the real volumes and reoriented copies,
# SIGKILL + --continue, failures that do not stop the batch, shards, the infer-then-eval loop.
# It trains a small model first (about 15 s), hence no-sanitize.
if(TARGET pipeline)
  add_test(NAME infer_cli COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/infer_test.sh
           $<TARGET_FILE:pipeline> ${CMAKE_SOURCE_DIR} ${MK_SHARED_DIR})
  set_tests_properties(infer_cli PROPERTIES TIMEOUT 600 LABELS no-sanitize)
endif()
# `mpirun -n P pipeline infer` (issue 22): masks byte for byte the single process's for P = 1, 2, 3,
# one merged summary; verbs that do not run on several ranks yet refused (tests/mpi_test.sh).
if(TARGET pipeline AND MK_HAVE_MPI_BUILD)
  add_test(NAME mpi_infer COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/mpi_test.sh
           $<TARGET_FILE:pipeline> ${CMAKE_SOURCE_DIR} ${MK_SHARED_DIR})
  set_tests_properties(mpi_infer PROPERTIES TIMEOUT 300 LABELS no-sanitize)
endif()
# `mpirun -n P pipeline run` (issue 22): data-parallel training, every model and checkpoint bit for
# bit the single process's for P = 1, 2, 3 after 1 and 10 iterations; a killed rank stops the job,
# --resume under mpirun finishes it (tests/mpi_train_test.sh).
if(TARGET pipeline AND MK_HAVE_MPI_BUILD)
  add_test(NAME mpi_train COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/mpi_train_test.sh
           $<TARGET_FILE:pipeline> $<TARGET_FILE:pipeline-nompi>)
  set_tests_properties(mpi_train PROPERTIES TIMEOUT 300 LABELS no-sanitize)
endif()
# A build without MPI (-DMK_MPI=OFF, the sanitizer build): one process, refusals under a launcher.
if(TARGET pipeline AND NOT MK_HAVE_MPI_BUILD)
  add_test(NAME no_mpi_build COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/no_mpi_test.sh
           $<TARGET_FILE:pipeline>)
  set_tests_properties(no_mpi_build PROPERTIES TIMEOUT 120)
endif()
