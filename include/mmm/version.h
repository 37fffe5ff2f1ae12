#ifndef MMM_VERSION_H
#define MMM_VERSION_H

#define MMM_VERSION "0.1.0"

/* Version and build features ("cpu", "cpu+cuda"). */
const char *mmm_version(void);
const char *mmm_build_features(void);

#endif
