# ITK bridge (DICOM, MetaImage, NRRD) and whole-slide TIFF tests.
mk_add_test(test_itk SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_itk.c LIBS mk_io TIMEOUT 120)
