/* phantoms-bench [CASES] [SEED] [CONTRAST] [SHIFT]: for lung CT and MR phantoms print the best
 * single-threshold tumour Dice (whole volume and inside the tumour box + 15 mm), split into
 * tumours abutting the mediastinum ("hard") and inside the lung ("easy"), per-tissue interior
 * means, and the generation time. Figures, not a test. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mk_log.h"
#include "phantoms/mk_phantoms.h"

static void tissue_means(const mk_image *img, const mk_image *tis, double sum[], long cnt[])
{
    int64_t n0 = img->dim[0], n1 = img->dim[1], n2 = img->dim[2];
    const uint8_t *T = tis->data;
    for (int64_t k = 0; k < n2; k++)
        for (int64_t j = 1; j + 1 < n1; j++)
            for (int64_t i = 1; i + 1 < n0; i++) {
                int64_t q = (k * n1 + j) * n0 + i;
                int t = T[q], ok = 1;
                for (int dj = -1; dj <= 1 && ok; dj++)
                    for (int di = -1; di <= 1; di++)
                        if (T[q + dj * n0 + di] != t) {
                            ok = 0;
                            break;
                        }
                if (ok) {
                    sum[t] += mk_image_get(img, q);
                    cnt[t]++;
                }
            }
}

/* Cardiac domain-shift proxy without learning: a nearest-class-mean classifier on per-volume
 * z-scored intensities (labels 0..3) fitted on the first half of one domain's cases, scored by
 * mean foreground Dice (labels 1..3) on the second half of each domain. */
static void zscore(const mk_image *img, float *z)
{
    int64_t n = mk_image_nvox(img);
    double s = 0, s2 = 0;
    for (int64_t q = 0; q < n; q++) {
        double v = mk_image_get(img, q);
        s += v;
        s2 += v * v;
    }
    double m = s / n, sd = sqrt(s2 / n - m * m) + 1e-9;
    for (int64_t q = 0; q < n; q++)
        z[q] = (float)((mk_image_get(img, q) - m) / sd);
}

static void cardiac_shift(mk_ctx *ctx, int cases, uint64_t seed, double shift)
{
    mk_phantom_params p;
    mk_phantom_params_default(&p, MK_PHANTOM_CARDIAC);
    p.seed = seed;
    p.shift = shift;
    int half = cases / 2;
    double mean[2][4] = {{0}};
    for (int d = 0; d < 2; d++) {
        double s[4] = {0};
        long c[4] = {0};
        for (int i = 0; i < half; i++) {
            mk_image *img, *lab;
            mk_phantom_volume(ctx, &p, d ? MK_PHANTOM_DOMAIN_CT : MK_PHANTOM_DOMAIN_MR, i, &img,
                              &lab, NULL, NULL);
            int64_t n = mk_image_nvox(img);
            float *z = malloc((size_t)n * sizeof *z);
            zscore(img, z);
            const uint8_t *L = lab->data;
            for (int64_t q = 0; q < n; q++)
                s[L[q]] += z[q], c[L[q]]++;
            free(z);
            mk_image_free(img);
            mk_image_free(lab);
        }
        for (int k = 0; k < 4; k++)
            mean[d][k] = c[k] ? s[k] / c[k] : 0;
    }
    printf("cardiac shift proxy (shift %.2f; nearest class mean on z-scored intensity, %d train / "
           "%d test cases per domain)\n",
           shift, half, cases - half);
    for (int tr = 0; tr < 2; tr++)
        for (int te = 0; te < 2; te++) {
            double dsum = 0;
            int nd = 0;
            for (int i = half; i < cases; i++) {
                mk_image *img, *lab;
                mk_phantom_volume(ctx, &p, te ? MK_PHANTOM_DOMAIN_CT : MK_PHANTOM_DOMAIN_MR, i,
                                  &img, &lab, NULL, NULL);
                int64_t n = mk_image_nvox(img);
                float *z = malloc((size_t)n * sizeof *z);
                zscore(img, z);
                const uint8_t *L = lab->data;
                long tp[4] = {0}, np_[4] = {0}, ng[4] = {0};
                for (int64_t q = 0; q < n; q++) {
                    int best = 0;
                    for (int k = 1; k < 4; k++)
                        if (fabs(z[q] - mean[tr][k]) < fabs(z[q] - mean[tr][best]))
                            best = k;
                    np_[best]++;
                    ng[L[q]]++;
                    tp[best] += best == L[q];
                }
                for (int k = 1; k < 4; k++) {
                    dsum += (np_[k] + ng[k]) ? 2.0 * tp[k] / (np_[k] + ng[k]) : 1.0;
                    nd++;
                }
                free(z);
                mk_image_free(img);
                mk_image_free(lab);
            }
            printf("  fit on %s, test on %s: mean Dice (RV, MYO, LV) %.3f\n", tr ? "CT" : "MR",
                   te ? "CT" : "MR", dsum / nd);
        }
}

int main(int argc, char **argv)
{
    int cases = argc > 1 ? atoi(argv[1]) : 20;
    uint64_t seed = argc > 2 ? strtoull(argv[2], NULL, 10) : 1;
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    for (int dom = 0; dom < 2; dom++) {
        mk_phantom_params p;
        mk_phantom_params_default(&p, MK_PHANTOM_LUNG);
        p.seed = seed;
        if (argc > 3)
            p.contrast = atof(argv[3]);
        double dg[2] = {0}, dr[2] = {0};
        int nh[2] = {0};
        double sum[MK_TISSUE_COUNT] = {0};
        long cnt[MK_TISSUE_COUNT] = {0};
        double t0 = mk_now_s();
        double tgen = 0;
        for (int c = 0; c < cases; c++) {
            mk_image *img, *lab, *tis;
            mk_phantom_info info;
            double t1 = mk_now_s();
            if (mk_phantom_volume(&ctx, &p, dom == 0 ? MK_PHANTOM_DOMAIN_CT : MK_PHANTOM_DOMAIN_MR,
                                  c, &img, &lab, &tis, &info) != MK_OK) {
                fprintf(stderr, "error: %s\n", mk_ctx_errmsg(&ctx));
                return 1;
            }
            tgen += mk_now_s() - t1;
            int64_t nv = mk_image_nvox(img);
            uint8_t *roi = malloc((size_t)nv);
            double d1, d2;
            mk_phantom_best_threshold_dice(&ctx, img, lab, NULL, &d1, NULL);
            mk_phantom_label_box_roi(lab, 15.0, roi);
            mk_phantom_best_threshold_dice(&ctx, img, lab, roi, &d2, NULL);
            dg[info.hard] += d1;
            dr[info.hard] += d2;
            nh[info.hard]++;
            tissue_means(img, tis, sum, cnt);
            free(roi);
            mk_image_free(img);
            mk_image_free(lab);
            mk_image_free(tis);
        }
        printf("lung %s: %d cases, %.3f s generation (%.1f ms/case), %.3f s with analysis\n",
               dom == 0 ? "CT" : "MR", cases, tgen, 1000 * tgen / cases, mk_now_s() - t0);
        for (int h = 0; h < 2; h++)
            if (nh[h])
                printf("  %-4s tumours (n=%2d): best-threshold Dice whole volume %.3f, tumour "
                       "box+15mm %.3f\n",
                       h ? "hard" : "easy", nh[h], dg[h] / nh[h], dr[h] / nh[h]);
        printf(
            "  all  tumours (n=%2d): best-threshold Dice whole volume %.3f, tumour box+15mm %.3f\n",
            nh[0] + nh[1], (dg[0] + dg[1]) / cases, (dr[0] + dr[1]) / cases);
        printf("  interior means:");
        for (int t = 0; t < MK_TISSUE_COUNT; t++)
            if (cnt[t])
                printf(" %s %.1f (n=%ld)", mk_phantom_tissue_name(t), sum[t] / cnt[t], cnt[t]);
        printf("\n");
    }
    for (int dom = 1; dom >= 0; dom--) {
        mk_phantom_params p;
        mk_phantom_params_default(&p, MK_PHANTOM_CARDIAC);
        p.seed = seed;
        double sum[MK_TISSUE_COUNT] = {0};
        long cnt[MK_TISSUE_COUNT] = {0};
        double t0 = mk_now_s();
        for (int c = 0; c < cases; c++) {
            mk_image *img, *lab, *tis;
            if (mk_phantom_volume(&ctx, &p, (mk_phantom_domain)dom, c, &img, &lab, &tis, NULL) !=
                MK_OK) {
                fprintf(stderr, "error: %s\n", mk_ctx_errmsg(&ctx));
                return 1;
            }
            tissue_means(img, tis, sum, cnt);
            mk_image_free(img);
            mk_image_free(lab);
            mk_image_free(tis);
        }
        printf("cardiac %s: %d cases, %.3f s\n  interior means:", dom ? "MR" : "CT", cases,
               mk_now_s() - t0);
        for (int t = 0; t < MK_TISSUE_COUNT; t++)
            if (cnt[t])
                printf(" %s %.1f (n=%ld)", mk_phantom_tissue_name(t), sum[t] / cnt[t], cnt[t]);
        printf("\n");
    }
    cardiac_shift(&ctx, cases, seed, argc > 4 ? atof(argv[4]) : 1.0);
    {
        mk_phantom_params p;
        mk_phantom_params_default(&p, MK_PHANTOM_HISTO);
        p.seed = seed;
        double t0 = mk_now_s();
        int nc = cases < 4 ? cases : 4;
        for (int c = 0; c < nc; c++) {
            mk_image *rgb, *m;
            mk_phantom_info info;
            if (mk_phantom_slide(&ctx, &p, MK_PHANTOM_DOMAIN_SITE_A, c, &rgb, &m, &info) != MK_OK) {
                fprintf(stderr, "error: %s\n", mk_ctx_errmsg(&ctx));
                return 1;
            }
            printf("histo slide %d: tumour fraction of tissue %.3f\n", c, info.fg_ml);
            mk_image_free(rgb);
            mk_image_free(m);
        }
        printf("histo: %d slides %dx%d in %.3f s\n", nc, p.size[0], p.size[1], mk_now_s() - t0);
    }
    return 0;
}
