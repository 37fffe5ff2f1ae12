/* GET /metrics: the scheduler's counters and the responses by status, in Prometheus' text
 * exposition format. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "server.h"

/* Resident memory of the process, from /proc (0 where there is none). */
static size_t resident_bytes(void) {
    long long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return 0;
    int ok = fscanf(f, "%lld %lld", &pages, &resident) == 2;
    fclose(f);
    return ok ? (size_t)resident * (size_t)sysconf(_SC_PAGESIZE) : 0;
}

char *srv_metrics_text(mmm_server *s) {
    srv_stats st;
    srv_sched_stats(s->sched, &st);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) return NULL;
    const struct { const char *name, *help; long long value; } counters[] = {
        {"mmm_requests_total", "generation requests received (admitted or not)", st.requests},
        {"mmm_requests_rejected_total", "generation requests refused for want of a session or memory", st.rejected},
        {"mmm_requests_cancelled_total", "generations ended because the client left", st.cancelled},
        {"mmm_requests_failed_total", "generations ended by an error", st.failed},
        {"mmm_prompt_tokens_total", "prompt tokens prefilled", st.prompt_tokens},
        {"mmm_generated_tokens_total", "tokens generated", st.generated_tokens},
        {"mmm_decode_steps_total", "decode steps (each feeds a token of every session that goes on)", st.decode_steps},
        {"mmm_decode_rows_total", "tokens fed by the decode steps", st.decode_rows},
    };
    for (size_t i = 0; i < sizeof counters / sizeof *counters; i++)
        fprintf(f, "# HELP %s %s\n# TYPE %s counter\n%s %lld\n", counters[i].name, counters[i].help, counters[i].name,
                counters[i].name, counters[i].value);
    fprintf(f, "# HELP mmm_http_responses_total responses by status (other: any status not listed)\n"
               "# TYPE mmm_http_responses_total counter\n");
    for (int i = 0; i < SRV_N_CODES; i++) {
        long long n = atomic_load(&s->responses[i]);
        if (srv_codes[i] > 0) fprintf(f, "mmm_http_responses_total{code=\"%d\"} %lld\n", srv_codes[i], n);
        else if (srv_codes[i] < 0) fprintf(f, "mmm_http_responses_total{code=\"other\"} %lld\n", n);
    }
    const struct { const char *name, *help; double value; } gauges[] = {
        {"mmm_busy_seconds", "seconds with at least one session generating", st.busy_seconds},
        {"mmm_tokens_per_second", "tokens generated per busy second, all sessions together",
         st.busy_seconds > 0 ? (double)st.generated_tokens / st.busy_seconds : 0},
        {"mmm_sessions_active", "sessions holding a state", st.active},
        {"mmm_batch_size", "sessions the last decode step fed together", st.last_batch},
        {"mmm_batch_size_mean", "sessions a decode step fed together, on average",
         st.decode_steps ? (double)st.decode_rows / (double)st.decode_steps : 0},
        {"mmm_sessions_queued", "admitted requests waiting for a session", st.queued},
        {"mmm_sessions_max", "sessions allowed at once", st.max_sessions},
        {"mmm_state_bytes", "bytes reserved by the active sessions' states", (double)st.state_bytes},
        {"mmm_state_budget_bytes", "bytes the states may hold together", (double)st.max_memory},
        {"mmm_resident_bytes", "resident memory of the server process", (double)resident_bytes()},
    };
    for (size_t i = 0; i < sizeof gauges / sizeof *gauges; i++)
        fprintf(f, "# HELP %s %s\n# TYPE %s gauge\n%s %.17g\n", gauges[i].name, gauges[i].help, gauges[i].name,
                gauges[i].name, gauges[i].value);
    if (fclose(f)) {
        free(text);
        return NULL;
    }
    return text;
}
