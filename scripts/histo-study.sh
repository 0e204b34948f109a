#!/bin/sh
# The 5-seed study of examples/histo.toml (issue 21; docs/results.md): the example's arms on the
# same phantoms for seeds 1..5, then the CTKD arm (histo_kd with a learnt global temperature and
# the seed's own teacher) and the meta curriculum arm (histo_meta) per seed. Then
#   /usr/bin/python3 scripts/histo-study.py STUDY_DIR
# usage: scripts/histo-study.sh [STUDY_DIR (runs/histo-study)] [PIPELINE (build/pipeline)]
set -u
D=${1:-runs/histo-study}
P=${2:-build/pipeline}
mkdir -p "$D"
for s in 1 2 3 4 5; do
  [ -f "$D/seed$s/reports/classification.json" ] ||
  "$P" --quiet run examples/histo.toml --out "$D/seed$s" --set run.seed=$s \
     --set synth.out_dir="$D/data" --set data.manifest="$D/data/manifest.csv" > "$D/seed$s.out" 2>&1
  echo "seed $s rc=$? $(date +%T)" >> "$D/done.txt"
done
for s in 1 2 3 4 5; do
  [ -f "$D/ctkd-seed$s/reports/classification.json" ] ||
  "$P" --quiet run examples/histo.toml --out "$D/ctkd-seed$s" --set run.seed=$s \
     --set data.manifest="$D/data/manifest.csv" --set 'run.stages=["histo_kd", "evaluate"]' \
     --set histo_kd.temperature=global --set histo_kd.teacher_model="$D/seed$s/models/histo_cls.h5" \
     > "$D/ctkd-seed$s.out" 2>&1
  echo "ctkd seed $s rc=$? $(date +%T)" >> "$D/done.txt"
done
for s in 1 2 3 4 5; do
  [ -f "$D/meta-seed$s/reports/classification.json" ] ||
  "$P" --quiet run examples/histo.toml --out "$D/meta-seed$s" --set run.seed=$s \
     --set data.manifest="$D/data/manifest.csv" --set 'run.stages=["histo_meta", "evaluate"]' \
     > "$D/meta-seed$s.out" 2>&1
  echo "meta seed $s rc=$? $(date +%T)" >> "$D/done.txt"
done
