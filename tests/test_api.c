/* include/mmm.h is the whole public API: every header under include/mmm is in it. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "mmm/fileio.h"

TEST(public_header_includes_every_header) {
    char *api = NULL;
    if (!check(mmm_read_text_file("include/mmm.h", 1 << 20, &api, NULL) == 0, "include/mmm.h is readable")) return;
    static const char *const dirs[] = {"mmm", "mmm/ops"};
    int headers = 0, missing = 0;
    for (int d = 0; d < 2; d++) {
        char path[64];
        snprintf(path, sizeof path, "include/%s", dirs[d]);
        DIR *dir = opendir(path);
        for (struct dirent *e; dir && (e = readdir(dir));) {
            size_t n = strlen(e->d_name);
            if (n < 3 || strcmp(e->d_name + n - 2, ".h")) continue;
            char line[160];
            snprintf(line, sizeof line, "#include \"%s/%s\"", dirs[d], e->d_name);
            headers++;
            if (!strstr(api, line)) {
                missing++;
                printf("  include/mmm.h lacks %s\n", line);
            }
        }
        if (dir) closedir(dir);
    }
    check(headers > 30 && missing == 0, "include/mmm.h includes all %d public headers (%d missing)", headers, missing);
    free(api);
}
