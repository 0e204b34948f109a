#include "mk_rng.h"

#include <math.h>

uint64_t mk_splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t mk_xoshiro256ss(uint64_t s[4])
{
    uint64_t out = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

double mk_u64_to_unit(uint64_t x)
{
    return (double)(x >> 11) * 0x1.0p-53;
}

double mk_box_muller(double u1, double u2)
{
    return sqrt(-2.0 * log(1.0 - u1)) * cos(6.283185307179586 * u2);
}
