/* medkd core: the one pseudo-random generator of the project.
 *
 * splitmix64 (seeding) and xoshiro256** (Blackman and Vigna), plus the conversions every user
 * shares. The engine's mk_rng (nn/mk_tensor.h) and the phantoms' per-case streams
 * (phantoms/mk_phantoms.h) are thin wrappers that differ only in how they seed, so both draw the
 * same, tested sequence for the same state.
 */
#ifndef MK_RNG_H
#define MK_RNG_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Advance a splitmix64 state and return the next output. */
uint64_t mk_splitmix64(uint64_t *state);
/* Advance a xoshiro256** state (4 words, not all zero) and return the next output. */
uint64_t mk_xoshiro256ss(uint64_t s[4]);
/* The top 53 bits of x as a double in [0, 1). */
double mk_u64_to_unit(uint64_t x);
/* A standard normal from two uniforms u1, u2 in [0, 1) (Box-Muller, no caching):
 * sqrt(-2 log(1 - u1)) cos(2 pi u2). */
double mk_box_muller(double u1, double u2);

#ifdef __cplusplus
}
#endif
#endif
