/* The verb table of `pipeline`: one row per verb. Add a verb by adding a row here and a handler in
 * pipeline/verb_<name>.c declared in mk_verbs.h. */
#include <stdio.h>
#include <string.h>

#include "mk_verbs.h"

#define MK_EXIT_CODES_HELP                                                                         \
    "Exit codes: 0 success, 1 runtime failure (I/O, data, training), 2 usage or configuration "    \
    "error."

const mk_verb MK_VERBS[] = {
    {"run", "run the stages of a config (training, inference, evaluation)",
     "run CONFIG [--resume [--force]] [--out DIR] [--seed N] [--threads N] [--set KEY=VALUE ...] "
     "[--dry-run]",
     "Validates CONFIG and checks the data (files, grids, label values), then runs its stages in\n"
     "order inside the run directory.\n"
     "  --out DIR      run directory (overrides [run].out_dir)\n"
     "  --seed N       master seed (overrides [run].seed)\n"
     "  --threads N    worker threads (overrides [run].threads)\n"
     "  --set K=V      override any config key, e.g. --set cmedl.lambda_hint=0.3 (V is TOML; a\n"
     "                 bare word is a string); repeatable\n"
     "  --resume       continue an interrupted run from its last checkpoint; refused when the\n"
     "                 config or the manifest differs from the run's (provenance.json)\n"
     "  --force        with --resume: resume anyway (a warning, recorded in provenance.json)\n"
     "  --dry-run      run every check the run makes, print the resolved plan, write nothing\n"
     "Under an MPI launcher (mpirun -n P, srun) the training stages run data-parallel: every\n"
     "batch is split over the P ranks and the models equal one process's bit for bit\n"
     "(docs/scaling.md); rank 0 writes the run directory.",
     mk_verb_run, 1},
    {"validate", "check a config against the schema without running it",
     "validate CONFIG [--explain] [--print]",
     "Parses CONFIG as TOML 1.0 and checks every key against the schema: unknown keys (with a\n"
     "'did you mean' suggestion), types, ranges, choices, required keys and input paths; then\n"
     "every check 'pipeline run' makes before it starts (the stages' rules, the manifest's rows,\n"
     "files, grids and label values) but those of the run directory.\n"
     "  --explain      print every section and key of the schema with type, default and meaning\n"
     "  --print        print the resolved config (defaults filled in) as TOML",
     mk_verb_validate, 0},
    {"eval", "score predicted label images against references (dice, hd95, surface dice, ...)",
     "eval --pred P --ref R [--labels 1,2] [--tolerance-mm T] [--convention deepmind|medpy] [--out "
     "report.h5] [--json FILE] [--csv FILE] [--resample-to-ref] [--both-empty nan|one] "
     "[--label-names FILE] [--max-labels N] [--force]",
     "P and R are NIfTI files, or folders paired by case id (file name without .nii/.nii.gz; an\n"
     "nnU-Net channel suffix _0000 is optional); unpaired files are listed.\n"
     "  --labels L,..       labels to score (default: every non-zero value in either image)\n"
     "  --tolerance-mm T    surface Dice tolerance in mm (default 1)\n"
     "  --convention C      deepmind (default: corner surfaces, area weighted) or medpy (voxel "
     "surfaces)\n"
     "  --out FILE.h5       HDF5 report (docs/report-schema.md)\n"
     "  --json FILE         JSON report; non-finite numbers are the strings \"inf\"/\"nan\"\n"
     "  --csv FILE          one row per case and label\n"
     "                      (FILE '-' or /dev/stdout: written to standard output, the table\n"
     "                      is then not printed there)\n"
     "  --resample-to-ref   map a prediction on another grid onto the reference grid (nearest)\n"
     "  --both-empty P      a label in neither mask of a case: nan (default, nnU-Net: every score\n"
     "                      NaN, left out of every mean/sd/median and counted as excluded) or one\n"
     "                      (dice 1, distances 0, in the means)\n"
     "  --label-names FILE  structure names: an nnU-Net dataset.json (\"labels\"), a CSV\n"
     "                      value,name, or \"VALUE NAME [...]\" lines (AAL .txt, FreeSurfer LUT)\n"
     "  --max-labels N      refuse an image with more than N distinct non-zero values (default\n"
     "                      255): an intensity image is no label map; non-integer values are\n"
     "                      always refused\n"
     "  --force             score an image over --max-labels anyway (with a warning)\n"
     "Empty masks: one empty -> dice 0, distances inf; both empty -> see --both-empty.\n"
     "Under an MPI launcher (mpirun -n P) the cases are shared over the ranks (rank r scores\n"
     "every P-th from r) and rank 0 writes the one report, the same as one process's.",
     mk_verb_eval, 1},
    {"report", "the HTML report for radiologists over evaluations (plots, panels, paired tests)",
     "report INPUT... [-o REPORT.html] [--name NAME ...] [--json FILE] [--images DIR] [--window "
     "LOW,HIGH|auto] [--worst N] [--best N] [--bootstrap B] [--seed N] [--title TEXT]",
     "INPUT: a run directory (its reports/<model>.json for every model of reports/summary.json,\n"
     "its evaluate.report_window / report_worst / bootstrap; default output\n"
     "RUN/reports/report.html) or evaluation reports of 'pipeline eval --json'\n"
     "(one model each, named after the file; several are compared case by case). Writes one\n"
     "self-contained HTML file (inline SVG plots, PNG panels drawn with cairo, no network):\n"
     "summaries with bootstrap 95 % intervals, box plots, volumes and Bland-Altman agreement,\n"
     "paired comparison of every pair of models (mean Dice difference with bootstrap CI,\n"
     "Wilcoxon signed-rank p, Holm over structures), per-case tables, panels of the worst and\n"
     "best cases, and the excluded cases. Definitions: docs/report.md.\n"
     "  -o FILE         the page (written atomically)\n"
     "  --name NAME     the model names, one per model in order (default: file names)\n"
     "  --json FILE     the summary and the comparisons as JSON (summary.json's layout)\n"
     "  --images DIR    images to draw under the contours, matched by case id (<id>.nii.gz or\n"
     "                  <id>_0000.nii.gz), for reports that do not record them\n"
     "  --window L,H    grey window of the panels (default: -160,240 = W400/L40 for CT\n"
     "                  reports, else auto: each image's 0.5-99.5 percentiles)\n"
     "  --worst N       panels of the N worst cases per model (default 3); --best N (default 1)\n"
     "  --bootstrap B   resamples of the intervals (default 2000); --seed N (default 20261202)",
     mk_verb_report, 0},
    {"infer", "segment a folder, DICOM series, manifest or file of volumes with a trained model",
     "infer -m MODEL -i INPUT -o OUTDIR [--step F] [--tta] [--no-postprocess] [--threads N] "
     "[--continue] [--shard i/N] [--fail-fast]",
     "Loads MODEL once and writes one mask per case, OUTDIR/<case>.nii.gz (uint8 label values,\n"
     "uint16 past 255), on the input's exact grid (dims, affine, qform/sform codes; checked, a\n"
     "difference fails the case). Slice-wise sliding windows as the model was evaluated.\n"
     "  -m MODEL      a model file (models/*.h5 of a run), or a run directory: the first model of\n"
     "                its run.stages, models/<model>_best.h5 when present (evaluate.model =\n"
     "                \"best\"), else models/<model>.h5; without config.resolved.toml the only\n"
     "                models/*_student_best.h5, then *_student.h5\n"
     "  -i INPUT      a folder (.nii .nii.gz .hdr .mha .mhd .nrrd .nhdr files; nnU-Net suffix\n"
     "                _0000 dropped from the case id, channels _0001.. skipped; DICOM files of\n"
     "                the folder and of its sub-folders, one case per series), a CSV manifest\n"
     "                (its rows: id, image; a modality other than the model's fails the row) or\n"
     "                one image file. Cases run sorted by id; duplicate ids stop before any run.\n"
     "  -o OUTDIR     the masks, OUTDIR/infer.json (per case: status, error, seconds read /\n"
     "                preprocess / network / postprocess / write; failures, peak RSS, wall time)\n"
     "                and completion records OUTDIR/.medkd-infer/<case>.json\n"
     "  --step F      window step as a fraction of the patch, (0, 1] (default: the model's;\n"
     "                0.5 as nnU-Net)\n"
     "  --tta         average over mirrored inputs (about x4 the network time)\n"
     "  --no-postprocess  skip the model's post-processing (largest component)\n"
     "  --threads N   worker threads (default 0: one per core)\n"
     "  --continue    skip a case whose completion record matches: same input (path, size, mtime;\n"
     "                DICOM: the folder's files), model hash, step/tta/postprocess, and the mask\n"
     "                file's checksum; anything else (a mask truncated by a crash) is redone\n"
     "  --shard i/N   only cases i, i+N, i+2N, ... of the sorted list (0 <= i < N); summary\n"
     "                OUTDIR/infer.<i>of<N>.json. Without it, a Slurm array job's\n"
     "                SLURM_ARRAY_TASK_ID/_COUNT/_MIN (0- or 1-based) choose the shard\n"
     "  --fail-fast   stop at the first failed case (default: report it and go on)\n"
     "Every file is written to a temporary name and renamed; temporary files of interrupted runs\n"
     "are removed at start. A failed case leaves no mask. Then: pipeline eval --pred OUTDIR --ref\n"
     "LABELS scores the masks.\n"
     "Histology: with a patch classifier (models/histo_*.h5 of the histo_* stages), INPUT is a\n"
     "slide (tiled pyramidal TIFF) or a folder of .tif/.tiff slides; per slide the tissue patches\n"
     "of the model's level and size are classified: OUTDIR/<slide>_patches.csv (x, y in level-0\n"
     "pixels, level, size, tissue, one probability per class), OUTDIR/<slide>_coords.h5 (the\n"
     "patch coordinates in CLAM's HDF5 layout) and OUTDIR/<slide>_heatmap.png (the\n"
     "probability over the slide's thumbnail). A slide that cannot be read is reported and the\n"
     "others go on (exit 1 at the end).\n"
     "Exit codes: 0 every case ok or skipped, 1 a case failed (all listed: file: reason), 2 usage\n"
     "(options, missing -m/-i/-o, bad shard).",
     mk_verb_infer, 1},
    {"import", "write the CSV manifest of an nnU-Net v2 or MSD dataset folder",
     "import DATASET -o MANIFEST.csv [--modality NAME]",
     "DATASET is an nnU-Net v2 folder (dataset.json, imagesTr/CASE_0000.ext, labelsTr/CASE.ext,\n"
     "imagesTs/CASE_0000.ext), an MSD task folder (dataset.json with training/test lists), or\n"
     "their dataset.json. Writes one row per case (id, modality, image, label, split, domain;\n"
     "imagesTr -> train, imagesTs -> test; channels 1.. as columns image_0001, ...), paths\n"
     "relative to MANIFEST.csv when below its folder, atomically. Every file must exist.\n"
     "Edit the CSV (modality, split, domain) and use it as data.manifest.\n"
     "  -o FILE          the manifest to write (its folder is created)\n"
     "  --modality NAME  the modality of every row (default: dataset.json's channel 0 name)\n"
     "dataset.json's label names are printed but are not part of the CSV.",
     mk_verb_import, 0},
    {"plan", "fingerprint a dataset and write a config for it (spacing, patch, batch, window)",
     "plan DATASET -o CONFIG.toml [--method auto|supervised|cmedl] [--time-budget MINUTES] "
     "[--gflops G] [--iterations N] [--threads N] [--memory-gb G] [--samples N]",
     "DATASET is a CSV manifest, an nnU-Net v2 / MSD folder or its dataset.json. Reads every case\n"
     "once and summarises it per modality (spacing, size and orientation after reorientation to\n"
     "RAS; foreground intensity percentiles, mean, sd; label values; foreground share and\n"
     "extent), writes that as CONFIG.fingerprint.json (CONFIG without .toml) and a config with\n"
     "every choice explained: axial slices in RAS (across a 2x coarser axis if there is one),\n"
     "target spacing = median spacing, patch covering the median foreground extent, U-Net depth\n"
     "and batch for the memory budget, then smaller (batch, width, patch) until at least 600\n"
     "iterations fit the time budget, CT window from the foreground percentiles or MR z-score,\n"
     "labels (docs/plan.md).\n"
     "'pipeline run CONFIG.toml' trains and evaluates with it as it is.\n"
     "  -o FILE          the config to write (its folder is created)\n"
     "  --method M       supervised (a U-Net on one modality), cmedl (CT student, MR teacher) or\n"
     "                   auto (default: cmedl when there are labelled CT and MR rows)\n"
     "  --time-budget M  minutes the whole 'pipeline run' may take on this machine (default 30)\n"
     "  --gflops G       training GFLOP/s of this machine (default: measured, about 0.5 s; give\n"
     "                   it for a reproducible plan)\n"
     "  --iterations N   training iterations (default: what fits the budget, 600..4000)\n"
     "  --threads N      cases read at a time, and [run].threads (default 0: one per core)\n"
     "  --memory-gb G    activation memory of one training batch (default 2)\n"
     "  --samples N      foreground voxels per modality for the percentiles (default 1000000;\n"
     "                   more are subsampled deterministically, said in the fingerprint)",
     mk_verb_plan, 0},
    {"synth", "generate phantom data with exact labels (lung CT/MRI, cardiac MR/CT, histology)",
     "synth --kind lung|cardiac|histo --out DIR [--cases N] [--seed S] [--size ...] [knobs]",
     "Writes images, label maps, tissue maps, manifest.csv (id, modality, image, label, split,\n"
     "domain; paths relative to it), cases.csv and synth.toml under DIR (docs/phantoms.md).\n"
     "  --kind K        lung (CT + MR, tumour), cardiac (MR + CT, 1 RV 2 MYO 3 LV), histo "
     "(slides)\n"
     "  --out DIR       output folder (created)\n"
     "  --cases N       cases per domain (default lung/cardiac 12, histo 4)\n"
     "  --seed S        seed; case i is the same whatever N is (default 1)\n"
     "  --size A,B[,C]  volume voxels i,j,k (lung 64,64,24; cardiac 64,64,10) or slide W,H "
     "(1024,1024)\n"
     "  --contrast X    tumour contrast multiplier on the hard domain (default 1)\n"
     "  --noise X       noise multiplier (default 1)\n"
     "  --shift X       domain-shift strength 0..1 (cardiac CT mapping, histo stain; default 1)\n"
     "  --labelled F    fraction of training cases whose label is listed (default 1)\n"
     "  --hard-frac F   lung: fraction of tumours abutting the mediastinum (default 0.5)\n"
     "  --paired        lung: also write each CT case imaged as MR on the CT grid "
     "(*_as_mr.nii.gz,\n"
     "                  manifest column paired_mr: the oracle pseudo-MRI for cmedl.oracle_pmri)\n"
     "  --tile N --patch N   histo: TIFF tile size (128) and patch-label size (64)\n"
     "  --config FILE   read these from the [synth] table of a TOML file (options override it)",
     mk_verb_synth, 0},
    {"tiles", "cut a whole-slide TIFF into PNG patches with a tissue filter",
     "tiles SLIDE --level L --size N [--stride S] [--min-tissue F] [--mask-level M] --out DIR",
     "Reads level L of SLIDE (tiled or striped TIFF, pyramid as IFDs or SubIFDs), computes a "
     "tissue\n"
     "mask (Otsu on HSV saturation) at a low level, and writes every N x N patch of the grid with\n"
     "step S (default N) whose tissue fraction is >= F (default 0) as DIR/L<level>_x<x>_y<y>.png.\n"
     "DIR/tiles.csv lists file,level,x,y,width,height,tissue (x, y in level-0 pixels; width and\n"
     "height in level-L pixels). Nothing is left in DIR if the run fails.\n"
     "  --mask-level M  level for the tissue mask (default: smallest level with a side >= 512)",
     mk_verb_tiles, 0},
    {"info",
     "describe an image (dims, spacing, orientation, affine, datatype, value range) or a model",
     "info FILE|DICOMDIR|SLIDE|MODEL.h5 [--header] [--recursive] [--allow-gaps]",
     "FILE: .nii .nii.gz .hdr/.img (also qform/sform codes and matrices), .mha .mhd .nrrd .nhdr "
     ".dcm;\n"
     "DICOMDIR: a folder with one DICOM series (its series are listed first); SLIDE: a TIFF "
     "(levels,\n"
     "tile size, compression, downsample). The orientation code names where voxel axes i,j,k "
     "point\n"
     "(RAS letters, as nibabel's aff2axcodes); the affine maps voxel indices to RAS mm.\n"
     "MODEL.h5: a trained model's description (network, normalisation, slice axis, orientation,\n"
     "spacing, patch, labels, blending, post-processing, medkd version, config and model hash).\n"
     "  --header       NIfTI: read the header only (no value range)\n"
     "  --recursive    DICOMDIR: look for the series in sub-folders too\n"
     "  --allow-gaps   DICOMDIR: read a series with missing slices (see 'pipeline help convert')",
     mk_verb_info, 0},
    {"convert", "convert an image between formats (NIfTI, MetaImage, NRRD, DICOM in, TIFF)",
     "convert IN OUT [--dtype T] [--reorient CODE] [--spacing X,Y,Z] [--interp "
     "linear|nearest|label] [--series UID] [--recursive] [--allow-gaps]",
     "Reads IN (any format 'info' reads) and writes OUT by its extension (.nii .nii.gz .hdr .img\n"
     ".mha .mhd .nrrd .nhdr .tif). Geometry is kept exactly; NIfTI qform/sform are kept when the\n"
     "geometry is unchanged. OUT is written atomically (nothing is left on failure).\n"
     "  --dtype T        convert voxels (rounded and clamped for integer types)\n"
     "  --reorient CODE  permute/flip axes to CODE (e.g. RAS, LPS), exact\n"
     "  --spacing X,Y,Z  resample to this spacing in mm (one value: isotropic)\n"
     "  --interp M       linear (images, default), nearest or label (per-label linear, for masks)\n"
     "  --series UID     IN is a DICOM folder holding several series: read this one\n"
     "                   ('pipeline info DIR' lists them with their UIDs)\n"
     "  --recursive      IN is a DICOM folder whose files lie in sub-folders too\n"
     "  --allow-gaps     read a DICOM series with missing slices anyway: stacked with the mean\n"
     "                   spacing, so the slices after a gap lie off their true position\n"
     "                   (refused by default, naming the gap)",
     mk_verb_convert, 0},
    {"version", "print the version and the libraries medkd was built with", "version", "",
     mk_verb_version, 1},
    {"help", "list the verbs, or explain one", "help [VERB]", "", mk_verb_help, 0},
};
const int MK_VERB_COUNT = (int)(sizeof MK_VERBS / sizeof MK_VERBS[0]);

const mk_verb *mk_cli_find_verb(const char *name)
{
    for (int i = 0; i < MK_VERB_COUNT; i++)
        if (strcmp(MK_VERBS[i].name, name) == 0)
            return &MK_VERBS[i];
    return NULL;
}

void mk_cli_print_verb_help(FILE *out, const mk_verb *v)
{
    fprintf(out, "usage: pipeline %s\n\n%s.\n", v->usage, v->summary);
    if (v->help && *v->help)
        fprintf(out, "\n%s\n", v->help);
    fprintf(
        out,
        "\nGlobal options: --quiet, --verbose, --log-json (log lines as JSON), -h/--help.\n%s\n",
        MK_EXIT_CODES_HELP);
}

void mk_cli_print_overview(FILE *out)
{
    fprintf(out, "usage: pipeline [--quiet|--verbose] [--log-json] VERB [ARGS...]\n\n"
                 "medkd: medical-image segmentation and knowledge distillation.\n\nVerbs:\n");
    for (int i = 0; i < MK_VERB_COUNT; i++)
        fprintf(out, "  %-10s %s\n", MK_VERBS[i].name, MK_VERBS[i].summary);
    fprintf(out, "\n'pipeline help VERB' or 'pipeline VERB --help' explains one verb.\n%s\n",
            MK_EXIT_CODES_HELP);
}

mk_status mk_verb_help(mk_cli *cli, int argc, char **argv)
{
    if (argc < 2) {
        mk_cli_print_overview(stdout);
        return MK_OK;
    }
    if (argc > 2)
        return mk_err(cli->ctx, MK_ERR_USAGE, "help: expected at most one verb name");
    const mk_verb *v = mk_cli_find_verb(argv[1]);
    if (!v)
        return mk_err(cli->ctx, MK_ERR_USAGE, "help: unknown verb '%s' (see 'pipeline help')",
                      argv[1]);
    mk_cli_print_verb_help(stdout, v);
    return MK_OK;
}
