/* Deterministic random numbers (splitmix64): same seed, same numbers on every machine. */
#ifndef MMM_RNG_H
#define MMM_RNG_H

#include <stdint.h>

typedef struct { uint64_t s; } mmm_rng;

mmm_rng mmm_rng_seed(uint64_t seed);
uint64_t mmm_rng_next(mmm_rng *r);
double mmm_rng_uniform(mmm_rng *r);  /* [0, 1) */
double mmm_rng_normal(mmm_rng *r);   /* standard normal (Box-Muller) */

#endif
