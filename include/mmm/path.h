/* File-path helpers shared by the loaders and writers. */
#ifndef MMM_PATH_H
#define MMM_PATH_H

/* "dir/name" (no doubled slash), malloc'd; NULL when out of memory. */
char *mmm_path_join(const char *dir, const char *name);

#endif
