# phantoms: generators in memory (fast, also under sanitizers) and `pipeline synth` end to end.
if(TARGET mk_phantoms)
  # The pipeline executable needs mk_phantoms for the synth verb (pipeline/CMakeLists.txt lists
  # the module libraries it links; until mk_phantoms is in that list, link it from here).
  if(TARGET pipeline)
    target_link_libraries(pipeline PRIVATE mk_phantoms)
  endif()
  mk_add_test(test_phantoms SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_phantoms.c
              LIBS mk_phantoms mk_io TIMEOUT 120)
  get_target_property(_mk_ph_defs mk_phantoms COMPILE_DEFINITIONS)
  target_compile_definitions(test_phantoms PRIVATE ${_mk_ph_defs})

  if(TARGET pipeline)
    # CLI: usage errors exit 2 with a message naming the option / file:line; --config works and
    # command-line options override it.
    set(_p $<TARGET_FILE:pipeline>)
    set(_d ${CMAKE_BINARY_DIR}/tests/synth_cli)
    add_test(NAME synth_cli COMMAND sh -c "
      set -u; P='${_p}'; D='${_d}'; rm -rf \"$D\"; mkdir -p \"$D\"
      fail() { echo \"FAIL: $*\"; exit 1; }
      expect2() { \"$P\" synth \"$@\" >\"$D/out\" 2>\"$D/err\"; rc=$?; [ $rc -eq 2 ] || fail \"rc $rc for $*\"; }
      expect2 --kind brain --out \"$D/x\";  grep -q 'lung, cardiac, histo' \"$D/err\" || fail kind
      expect2 --kind lung --out \"$D/x\" --shift 2; grep -q -- '--shift' \"$D/err\" || fail shift
      expect2 --kind lung; grep -q -- '--out' \"$D/err\" || fail out
      expect2 --out \"$D/x\"; grep -q -- '--kind' \"$D/err\" || fail nokind
      expect2 --kind lung --out \"$D/x\" --size 32,32; grep -q 'NX,NY,NZ' \"$D/err\" || fail size
      expect2 --kind lung --out \"$D/x\" --bogus 1; grep -q 'bogus' \"$D/err\" || fail unknown
      printf '[synth]\\nkind = \"cardiac\"\\ncases = 2\\nsize = [24, 24, 4]\\nnoise = 0.5\\ncolour = 3\\n' > \"$D/bad.toml\"
      expect2 --config \"$D/bad.toml\"; grep -q 'bad.toml:6: synth.colour: unknown key' \"$D/err\" || fail toml
      printf '[synth]\\nkind = \"cardiac\"\\nout_dir = \"cfgout\"\\ncases = 2\\nsize = [24, 24, 4]\\nnoise = 0.5\\n' > \"$D/ok.toml\"
      \"$P\" --quiet synth --config \"$D/ok.toml\" --seed 5 >\"$D/out\" || fail config run
      grep -q 'synth cardiac: 4 cases' \"$D/out\" || fail config summary
      grep -q '^seed = 5$' \"$D/cfgout/synth.toml\" || fail seed override
      grep -q '^noise = 0.5$' \"$D/cfgout/synth.toml\" || fail noise from toml
      [ -f \"$D/cfgout/ct/cardiac_ct_001_label.nii.gz\" ] || fail files
      expect2 --kind cardiac --paired --out \"$D/x\"; grep -q 'paired' \"$D/err\" || fail paired kind
      printf '[synth]\\nkind = \"lung\"\\npaired = 1\\n' > \"$D/badp.toml\"
      expect2 --config \"$D/badp.toml\" --out \"$D/x\"; grep -q 'badp.toml:3: synth.paired: expected true or false' \"$D/err\" || fail paired type
      \"$P\" --quiet synth --kind lung --paired --cases 2 --size 24,24,4 --out \"$D/pair\" >\"$D/out\" || fail paired run
      head -1 \"$D/pair/manifest.csv\" | grep -q '^id,modality,image,label,split,domain,paired_mr$' || fail paired header
      grep -q '^lung_ct_001,CT,.*,ct/lung_ct_001_as_mr.nii.gz$' \"$D/pair/manifest.csv\" || fail paired row
      grep -q '^lung_mr_001,MR,.*,mr,$' \"$D/pair/manifest.csv\" || fail paired mr row
      [ -f \"$D/pair/ct/lung_ct_001_as_mr.nii.gz\" ] || fail paired file
      grep -q '^paired = true$' \"$D/pair/synth.toml\" || fail paired params
      [ ! -e \"$D/x\" ] || fail partial output
      echo ok")
    set_tests_properties(synth_cli PROPERTIES TIMEOUT 60)

    # Demo-size data of all three kinds (defaults), with the time printed; budget 30 s in all.
    set(_d2 ${CMAKE_BINARY_DIR}/tests/synth_demo)
    add_test(NAME synth_demo_time COMMAND sh -c "
      set -e; P='${_p}'; D='${_d2}'; rm -rf \"$D\"
      t0=$(date +%s.%N)
      for k in lung cardiac histo; do \"$P\" --quiet synth --kind $k --out \"$D/$k\"; done
      t1=$(date +%s.%N)
      awk -v a=$t0 -v b=$t1 'BEGIN { printf \"demo data (lung, cardiac, histo) generated in %.2f s\\n\", b - a; exit !(b - a < 30) }'
      rm -rf \"$D\"")
    set_tests_properties(synth_demo_time PROPERTIES TIMEOUT 120 LABELS no-sanitize)
  endif()
endif()
