#include "mmm/version.h"

const char *mmm_version(void) { return MMM_VERSION; }

const char *mmm_build_features(void) {
#ifdef MMM_WITH_CUDA
    return "cpu (OpenBLAS, OpenMP) + cuda";
#else
    return "cpu (OpenBLAS, OpenMP)";
#endif
}
