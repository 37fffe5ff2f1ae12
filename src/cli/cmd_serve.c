/* mmm serve: an OpenAI-compatible HTTP server over a model, until SIGINT or SIGTERM. */
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "device.h"
#include "mmm/error.h"
#include "mmm/memory.h"
#include "mmm/serve.h"

static void usage(FILE *f) {
    fputs("usage: mmm serve --model DIR [--host ADDR] [--port N] [--name ID] [--max-sessions N]\n"
          "                 [--max-queue N] [--max-memory GB] [--context N] [--max-tokens N]\n"
          "                 [--max-body-mb N] [--image-dir DIR] [--device cpu|cuda] [--dtype f32|bf16|int8]\n"
          "                 [--max-image-pixels N] [--prefill-chunk N]\n\n"
          "Serves the model over HTTP with OpenAI's API: POST /v1/chat/completions and\n"
          "/v1/completions (stream: true for server-sent events), GET /v1/models, /health and\n"
          "/metrics. Prints the address it listens on, then serves until interrupted.\n"
          "Concurrent requests decode together, one batch step per token (docs/serve.md).\n\n"
          "  --host ADDR        numeric address to listen on (default 127.0.0.1)\n"
          "  --port N           port (default 8080; 0: any free port, printed)\n"
          "  --name ID          the model id replies carry (default: the model folder's name)\n"
          "  --max-sessions N   requests generating at once (default 16)\n"
          "  --max-queue N      requests waiting for a session; more are refused with 429 (default 64)\n"
          "  --max-memory GB    memory all sessions' states may take together (default: half of\n"
          "                     this machine's); a request needing more than all of it gets 503\n"
          "  --context N        tokens one request (prompt + answer) may reach (default 8192)\n"
          "  --max-tokens N     answer length when a request gives no max_tokens (default 256)\n"
          "  --max-body-mb N    larger request bodies get 413 (default 32)\n"
          "  --image-dir DIR    image_url may name files inside DIR (default: data: URLs only)\n"
          "  --prefill-chunk N  prompt tokens fed between two decode steps of the others; a prompt\n"
          "                     with images goes whole (default 512; 0: every prompt whole)\n"
          CLI_IMAGE_LIMIT_HELP CLI_THREADS_HELP CLI_DEVICE_HELP CLI_DTYPE_HELP "\n"
          "example: mmm serve --model runs/demo/linear --port 8080\n", f);
}

/* The last component of a folder path ("runs/demo/linear/" -> "linear"), malloc'd. */
static char *folder_name(const char *dir) {
    size_t end = strlen(dir);
    while (end > 1 && dir[end - 1] == '/') end--;
    size_t start = end;
    while (start > 0 && dir[start - 1] != '/') start--;
    return strndup(dir + start, end - start);
}

int cmd_serve(int argc, char **argv) {
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'}, {"host", required_argument, 0, 'H'},
        {"port", required_argument, 0, 'p'}, {"name", required_argument, 0, 'n'},
        {"max-sessions", required_argument, 0, 's'}, {"max-queue", required_argument, 0, 'q'},
        {"max-memory", required_argument, 0, 'M'}, {"context", required_argument, 0, 'c'},
        {"max-tokens", required_argument, 0, 'x'}, {"max-body-mb", required_argument, 0, 'b'},
        {"image-dir", required_argument, 0, 'i'}, {"device", required_argument, 0, 'D'},
        {"dtype", required_argument, 0, 'y'}, {"max-image-pixels", required_argument, 0, 1400},
        {"prefill-chunk", required_argument, 0, 1401},
        {"threads", required_argument, 0, 't'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    const char *model_dir = NULL, *name = NULL;
    mmm_serve_options so = {.host = "127.0.0.1", .port = 8080, .max_sessions = 16, .max_queue = 64,
                            .context = 8192, .max_tokens = 256, .prefill_chunk = 512};
    int cuda = 0, body_mb = 32, o;
    mmm_weight_type dtype = MMM_WEIGHTS_F32;
    double memory_gb = 0;
    optind = 1;
    while ((o = getopt_long(argc, argv, ":ht:", opts, NULL)) != -1) {
        switch (o) {
        case 'm': model_dir = optarg; break;
        case 'H': so.host = optarg; break;
        case 'p': if (cli_parse_int("serve", "--port", optarg, 0, 65535, &so.port)) return 2; break;
        case 'n': name = optarg; break;
        case 's': if (cli_parse_int("serve", "--max-sessions", optarg, 1, 4096, &so.max_sessions)) return 2; break;
        case 'q': if (cli_parse_int("serve", "--max-queue", optarg, 0, 1 << 16, &so.max_queue)) return 2; break;
        case 'M': if (cli_parse_double("serve", "--max-memory", optarg, 1e-3, 1e6, &memory_gb)) return 2; break;
        case 'c': if (cli_parse_int("serve", "--context", optarg, 16, INT_MAX / 2, &so.context)) return 2; break;
        case 'x': if (cli_parse_int("serve", "--max-tokens", optarg, 1, 1 << 30, &so.max_tokens)) return 2; break;
        case 'b': if (cli_parse_int("serve", "--max-body-mb", optarg, 1, 4096, &body_mb)) return 2; break;
        case 'i': so.image_dir = optarg; break;
        case 'D': if (cli_parse_device("serve", optarg, &cuda)) return 2; break;
        case 'y': if (cli_parse_decode_dtype("serve", optarg, &dtype)) return 2; break;
        case 1400: if (cli_parse_image_limit("serve", optarg)) return 2; break;
        case 1401: if (cli_parse_int("serve", "--prefill-chunk", optarg, 0, INT_MAX, &so.prefill_chunk)) return 2; break;
        case 't': if (cli_parse_threads("serve", optarg)) return 2; break;
        case 'h': usage(stdout); return 0;
        default: return cli_bad_option("serve", o, argv);
        }
    }
    if (optind < argc) return cli_usage_error("serve", "unexpected argument '%s'", argv[optind]);
    if (!model_dir) return cli_usage_error("serve", "needs --model");
    if (so.image_dir && access(so.image_dir, X_OK) != 0)
        return cli_usage_error("serve", "--image-dir '%s' is not a folder that can be read", so.image_dir);
    if (cli_check_decode_dtype("serve", cuda, dtype)) return 2;
    if (cli_check_device("serve", cuda)) return 1;
    so.max_body_bytes = (size_t)body_mb << 20;
    so.max_memory = memory_gb > 0 ? (size_t)(memory_gb * 1e9) : mmm_memory_limit(NULL) / 2;
    char *default_name = folder_name(model_dir);
    so.model_name = name ? name : default_name;
    /* SIGINT and SIGTERM are taken by sigwait below; blocked before any thread starts, so that
     * none of the server's threads receives them */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    mmm_model *m = NULL;
    mmm_tokenizer *tok = NULL;
    mmm_server *srv = NULL;
    int rc = default_name ? mmm_model_load(&m, model_dir) : mmm_fail(MMM_ERR_NOMEM, "out of memory");
    if (!rc) rc = mmm_tokenizer_load(model_dir, &tok);
    if (!rc) rc = cli_check_tokenizer(&m->cfg, tok, model_dir);
    if (!rc) rc = cli_use_decode_dtype(cuda, dtype, m, NULL); /* first: on the GPU then the weights go in bf16 only */
    if (!rc) rc = cli_use_device(cuda, m, NULL);
    if (!rc) rc = mmm_server_start(&srv, m, tok, &so);
    if (!rc) {
        int v6 = strchr(so.host, ':') != NULL;
        printf("mmm serve: listening on http://%s%s%s:%d (model %s)\n", v6 ? "[" : "", so.host, v6 ? "]" : "",
               mmm_server_port(srv), so.model_name);
        fflush(stdout);
        int sig;
        sigwait(&stop, &sig);
        printf("mmm serve: %s, stopping\n", sig == SIGINT ? "interrupted" : "terminated");
    }
    int status = rc ? cli_fail("serve") : 0;
    mmm_server_stop(srv);
    mmm_tokenizer_free(tok);
    mmm_model_free(m);
    free(default_name);
    return status;
}
