/* Fuzz target: a checkpoint's trainer_state.json through ckpt_load_state, the gate a resumed run
 * passes before anything of the checkpoint is used. Whatever it accepts (or accepts as a forced
 * resume of another run) must be a state the trainer can continue from: the data position inside
 * the data, the step inside the run, counts and time non-negative. */
#include <math.h>
#include <string.h>

#include "../../src/train/train_internal.h"
#include "fuzz.h"
#include "mmm/error.h"

enum { STEPS = 10, SAMPLES = 100 };

int mmm_fuzz_trainer_state(const uint8_t *data, size_t size) {
    static mmm_run_facts facts;
    if (!facts.n && (mmm_run_facts_value(&facts, "data", "the data file", "fnv1a64:0123456789abcdef") ||
                     mmm_run_facts_value(&facts, "lr", "--lr", "0.001")))
        fuzz_bug("cannot make the run facts: %s", mmm_last_error());
    const char *path = fuzz_write_file("step-0000002/trainer_state.json", data, size);
    if (!path) return MMM_ERR_IO;
    char dir[4096];
    size_t len = strlen(path) - strlen("/trainer_state.json");
    memcpy(dir, path, len);
    dir[len] = '\0';
    ckpt_expect want = {"train", STEPS, SAMPLES, 7, &facts};
    trainer_state st;
    memset(&st, 0xA5, sizeof st); /* a field left unset shows up as garbage below */
    int differs = 0;
    int rc = ckpt_load_state(dir, &want, &st, &differs);
    if (rc && !differs) return rc;
    if (st.step != 2 || st.position < 0 || st.position > SAMPLES || st.epoch < 0 || st.seed != 7 ||
        !isfinite(st.seconds) || st.seconds < 0 || st.tokens < 0 || strcmp(st.name, "train"))
        fuzz_bug("accepted an unusable state: step %ld, epoch %d, position %d, seed %llu, %g s, %ld tokens", st.step,
                 st.epoch, st.position, (unsigned long long)st.seed, st.seconds, st.tokens);
    return rc;
}

MMM_FUZZ_TARGET(trainer_state)
