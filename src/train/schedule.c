/* Learning-rate schedules: warmup–stable–decay (the paper's) and cosine. */
#include <math.h>
#include <string.h>

#include "mmm/error.h"
#include "mmm/train.h"

float mmm_lr_at(const mmm_lr_schedule *s, long step) {
    double total = s->total_steps > 0 ? (double)s->total_steps : 1.0;
    double warm = floor(s->warmup * total), t = (double)step;
    double lo = s->lr * s->min_ratio;
    if (t < warm) return (float)(s->lr * (t + 1) / warm);
    switch (s->kind) {
    case MMM_SCHED_CONSTANT: return s->lr;
    case MMM_SCHED_COSINE: {
        double p = (t - warm) / fmax(total - warm, 1.0);
        return (float)(lo + 0.5 * (s->lr - lo) * (1 + cos(M_PI * fmin(p, 1.0))));
    }
    default: {
        double decay = floor(s->decay * total), start = total - decay;
        if (t < start || decay <= 0) return s->lr;
        double p = (t - start + 1) / decay;
        return (float)(s->lr + (lo - s->lr) * fmin(p, 1.0));
    }
    }
}

int mmm_parse_schedule(const char *name, mmm_schedule *out) {
    if (!strcmp(name, "wsd")) *out = MMM_SCHED_WSD;
    else if (!strcmp(name, "cosine")) *out = MMM_SCHED_COSINE;
    else if (!strcmp(name, "constant")) *out = MMM_SCHED_CONSTANT;
    else return mmm_fail(MMM_ERR_ARG, "unknown schedule '%s' (wsd, cosine or constant)", name);
    return MMM_OK;
}
