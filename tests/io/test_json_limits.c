/* JSON caps (mmm_json_check / mmm_json_parse / mmm_json_load_limits): the counts the scan makes
 * match the nodes cJSON builds, each cap refuses with a message naming the file and the limit,
 * strings and escapes do not confuse the scan, and a refused text builds no tree. */
#include "../harness.h"

#include "mmm/error.h"
#include "mmm/fileio.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int json_rc(const char *text, mmm_json_limits lim) {
    return mmm_json_check(text, strlen(text), &lim, "t.json");
}

/* Nodes of a cJSON tree, the root included: what max_values counts. */
static size_t tree_nodes(const cJSON *j) {
    size_t n = 1;
    for (const cJSON *c = j->child; c; c = c->next) n += tree_nodes(c);
    return n;
}

TEST(json_limits_values_match_cjson_nodes) {
    const char *docs[] = {"0", "[]", "{}", "[1,2,3]", "{\"a\": [1, {\"b\": \"x,]}\"}], \"c\": {}}",
                          "[[1,2],[3],[],{\"k\":[[]]}]", " \"s\\\"[,\" ", "{\"a\\\\\": \"\\\\\", \"b\": null}"};
    for (size_t d = 0; d < sizeof docs / sizeof *docs; d++) {
        cJSON *j = cJSON_Parse(docs[d]);
        if (!check(j != NULL, "json limits: doc %zu is valid JSON", d)) continue;
        size_t n = tree_nodes(j); /* a cap of n − 1 = 0 would mean no cap */
        cJSON_Delete(j);
        check(json_rc(docs[d], (mmm_json_limits){.max_values = n}) == MMM_OK &&
                  (n == 1 || json_rc(docs[d], (mmm_json_limits){.max_values = n - 1}) == MMM_ERR_FORMAT),
              "json limits: doc %zu has exactly %zu values, as cJSON's tree has nodes", d, n);
    }
}

TEST(json_limits_members_depth_bytes) {
    check(json_rc("[1,2,3]", (mmm_json_limits){.max_members = 3}) == MMM_OK, "json limits: 3 elements within 3");
    check(json_rc("[1,2,3,4]", (mmm_json_limits){.max_members = 3}) == MMM_ERR_FORMAT &&
              strstr(mmm_last_error(), "t.json: the JSON array at byte 0 has more than 3 elements"),
          "json limits: 4 elements refused naming the file, the array and the limit (%s)", mmm_last_error());
    check(json_rc("{\"a\":[1],\"b\":{\"c\":1,\"d\":2,\"e\":3}}", (mmm_json_limits){.max_members = 2}) ==
                  MMM_ERR_FORMAT &&
              strstr(mmm_last_error(), "object at byte 13 has more than 2 members"),
          "json limits: the nested object's members are counted on their own (%s)", mmm_last_error());
    check(json_rc("[\"a,b,c,d\", \"[[[[\"]", (mmm_json_limits){.max_members = 2, .max_depth = 1}) == MMM_OK,
          "json limits: commas and brackets inside strings count for nothing");
    check(json_rc("[[[1]]]", (mmm_json_limits){.max_depth = 3}) == MMM_OK &&
              json_rc("[[[[1]]]]", (mmm_json_limits){.max_depth = 3}) == MMM_ERR_FORMAT &&
              strstr(mmm_last_error(), "nested deeper than 3 levels"),
          "json limits: depth 3 allowed, 4 refused (%s)", mmm_last_error());
    check(json_rc("[1, 2]", (mmm_json_limits){.max_bytes = 5}) == MMM_ERR_FORMAT &&
              strstr(mmm_last_error(), "6 bytes of JSON is more than the 5 allowed"),
          "json limits: byte cap (%s)", mmm_last_error());
    char nul[] = "[1,\0 2]";
    mmm_json_limits none = {0};
    check(mmm_json_check(nul, sizeof nul - 1, &none, "t.json") == MMM_ERR_FORMAT &&
              strstr(mmm_last_error(), "NUL byte at byte 3"),
          "json limits: a NUL byte is refused (%s)", mmm_last_error());
    /* with no caps, nesting still stops at cJSON's own limit instead of overrunning the scan */
    size_t deep = 1500;
    char *d = malloc(2 * deep + 1);
    memset(d, '[', deep);
    memset(d + deep, ']', deep);
    d[2 * deep] = '\0';
    check(json_rc(d, none) == MMM_ERR_FORMAT && strstr(mmm_last_error(), "deeper than 1000"),
          "json limits: 1500 levels refused with no caps given (%s)", mmm_last_error());
    free(d);
}

TEST(json_limits_parse) {
    mmm_json_limits lim = {.max_members = 4};
    void *root = NULL;
    /* not NUL-terminated: the length alone bounds the text */
    const char text[] = "{\"a\": [1, 2]}  xyz";
    check(mmm_json_parse(text, 15, &lim, "hdr", &root) == MMM_OK && cJSON_IsObject((cJSON *)root),
          "json parse: a length-bounded text parses");
    cJSON_Delete(root);
    root = NULL;
    check(mmm_json_parse(text, sizeof text - 1, &lim, "hdr", &root) == MMM_ERR_FORMAT && !root &&
              strstr(mmm_last_error(), "hdr: not valid JSON (error near byte 15)"),
          "json parse: text after the value is refused (%s)", mmm_last_error());
    check(mmm_json_parse("[1,2,3,4,5]", 11, &lim, "hdr", &root) == MMM_ERR_FORMAT && !root,
          "json parse: a refused text builds no tree");
    check(mmm_json_parse("[1,2", 4, &lim, "hdr", &root) == MMM_ERR_FORMAT && !root &&
              strstr(mmm_last_error(), "hdr: not valid JSON"),
          "json parse: truncated JSON (%s)", mmm_last_error());
}

TEST(json_limits_load_names_file) {
    char path[] = "/tmp/mmm_json_XXXXXX";
    int fd = mkstemp(path);
    if (!check(fd >= 0, "json load: temporary file")) return;
    const char *big = "[0,0,0,0,0,0,0,0,0,0]";
    if (write(fd, big, strlen(big)) != (ssize_t)strlen(big)) perror(path);
    close(fd);
    mmm_json_limits lim = {.max_bytes = 1 << 10, .max_members = 8};
    void *root = NULL;
    check(mmm_json_load_limits(path, &lim, &root) == MMM_ERR_FORMAT && !root &&
              strstr(mmm_last_error(), path) && strstr(mmm_last_error(), "more than 8 elements"),
          "json load: the refusal names the file (%s)", mmm_last_error());
    lim.max_members = 10;
    check(mmm_json_load_limits(path, &lim, &root) == MMM_OK && cJSON_GetArraySize((cJSON *)root) == 10,
          "json load: within the caps it loads");
    cJSON_Delete(root);
    check(mmm_json_load(path, 8, &root) == MMM_ERR_FORMAT && strstr(mmm_last_error(), path),
          "json load: the old byte cap still applies (%s)", mmm_last_error());
    unlink(path);
}
