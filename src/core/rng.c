#include "mmm/rng.h"

#include <math.h>

mmm_rng mmm_rng_seed(uint64_t seed) { return (mmm_rng){seed ^ 0x6A09E667F3BCC909ull}; }

uint64_t mmm_rng_next(mmm_rng *r) {
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

double mmm_rng_uniform(mmm_rng *r) { return (mmm_rng_next(r) >> 11) * 0x1.0p-53; }

double mmm_rng_normal(mmm_rng *r) {
    double u1 = mmm_rng_uniform(r), u2 = mmm_rng_uniform(r);
    return sqrt(-2.0 * log(1.0 - u1)) * cos(6.283185307179586 * u2);
}
