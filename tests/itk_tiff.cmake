# ITK bridge (DICOM, MetaImage, NRRD) and whole-slide TIFF tests.
mk_add_test(test_itk SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_itk.c LIBS mk_io TIMEOUT 300)
mk_add_test(test_tiff SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_tiff.c
            ${CMAKE_SOURCE_DIR}/cli/verb_tiles.c ${CMAKE_SOURCE_DIR}/cli/cli_args.c
            LIBS mk_histo mk_io TIFF::TIFF TIMEOUT 120)
