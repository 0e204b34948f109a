/* The one "same grid" rule (mk_geom_grid_diff / mk_geom_same_grid) and the nearest-neighbour
 * resampler's outside rule (mk_resample_like_ex), which `pipeline eval --resample-to-ref` uses. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "io/mk_image.h"
#include "io/mk_resample.h"

static mk_image *cube(int64_t n, double spacing, double ox)
{
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    int64_t dim[3] = {n, n, n};
    mk_image *img = NULL;
    assert_int_equal(mk_image_new(&ctx, MK_DT_UINT8, 3, dim, &img), MK_OK);
    for (int d = 0; d < 3; d++)
        img->geom.spacing[d] = spacing;
    img->geom.origin[0] = ox;
    for (int64_t q = 0; q < mk_image_nvox(img); q++)
        mk_image_set(img, q, 1);
    return img;
}

static void test_grid_diff(void **state)
{
    (void)state;
    mk_image *a = cube(4, 2.0, 0), *b = cube(4, 2.0, 0), *c = cube(4, 2.0, 0.01),
             *d = cube(5, 2, 0);
    char why[256];
    assert_true(mk_geom_grid_diff(a, b, 1e-4, why, sizeof why));
    assert_true(mk_geom_same_grid(a, b, 1e-4));
    assert_false(mk_geom_grid_diff(a, c, 1e-4, why, sizeof why));
    assert_non_null(strstr(why, "origin"));
    assert_false(mk_geom_same_grid(a, c, 1e-4));
    assert_true(mk_geom_same_grid(a, c, 1e-2)); /* 0.01 mm <= 1e-2 x 2 mm */
    assert_false(mk_geom_grid_diff(a, d, 1e-4, why, sizeof why));
    assert_non_null(strstr(why, "shape 4x4x4 vs 5x5x5"));
    b->geom.spacing[2] = 2.001;
    assert_false(mk_geom_grid_diff(a, b, 1e-4, why, sizeof why));
    assert_non_null(strstr(why, "spacing"));
    b->geom.spacing[2] = 2.0;
    b->geom.direction[0] = -1;
    assert_false(mk_geom_grid_diff(a, b, 1e-4, NULL, 0));
    mk_image_free(a);
    mk_image_free(b);
    mk_image_free(c);
    mk_image_free(d);
}

/* A label cube of 4 voxels (x centres 0, 2, 4, 6 mm) onto a grid shifted by +3 mm: output centres
 * 3, 5, 7, 9 mm. 3 and 5 mm lie inside (nearest 2 or 4, 4 or 6); 7 mm is on the extent's edge
 * (6 + half a voxel) and 9 mm outside: 0 with MK_OUTSIDE_ZERO, the border value with CLAMP. */
static void test_outside_rule(void **state)
{
    (void)state;
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_image *src = cube(4, 2.0, 0), *grid = cube(4, 2.0, 3.0), *z = NULL, *c = NULL;
    assert_int_equal(mk_resample_like_ex(&ctx, src, grid, MK_INTERP_NEAREST, MK_OUTSIDE_ZERO, &z),
                     MK_OK);
    assert_int_equal(mk_resample_like(&ctx, src, grid, MK_INTERP_NEAREST, &c), MK_OK);
    assert_true(mk_geom_same_grid(z, grid, 1e-9));
    for (int64_t y = 0; y < 4; y++)
        for (int64_t x = 0; x < 4; x++) {
            int64_t q = x + 4 * (y + 4 * 1);
            assert_int_equal((int)mk_image_get(z, q), x < 2 ? 1 : 0);
            assert_int_equal((int)mk_image_get(c, q), 1);
        }
    mk_image_free(src);
    mk_image_free(grid);
    mk_image_free(z);
    mk_image_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grid_diff),
        cmocka_unit_test(test_outside_rule),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
