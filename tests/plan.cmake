# `pipeline import` and `pipeline plan` on the real cranium CT cut into an nnU-Net dataset
# (scripts/make-cranium-dataset.py): manifest, fingerprint against nibabel/numpy, planning rules,
# `pipeline validate` on the written configs, the compute budget, exit codes. Fails without
# MK_SHARED_DIR's data.
if(TARGET pipeline)
  add_test(NAME plan_import COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/plan_test.sh
           $<TARGET_FILE:pipeline> ${CMAKE_SOURCE_DIR} ${MK_SHARED_DIR})
  set_tests_properties(plan_import PROPERTIES TIMEOUT 300)
endif()
