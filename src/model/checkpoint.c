/* Loading and saving models in the Hugging Face layout: a walk over the parameter table. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "mmm/error.h"
#include "mmm/fileio.h"
#include "mmm/model.h"
#include "mmm/path.h"
#include "mmm/safetensors.h"

/* Appends a formatted item to a bounded problem list. */
static void note(char *buf, size_t cap, int *count, const char *fmt, const char *a, const char *b) {
    size_t len = strlen(buf);
    if (++*count <= 8 && len + 1 < cap)
        snprintf(buf + len, cap - len, fmt, a, b);
    else if (*count == 9 && len + 8 < cap)
        snprintf(buf + len, cap - len, ", ...");
}

static void shape_str(char *buf, size_t cap, int ndim, const int64_t *shape) {
    size_t n = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
}

/* Checks that the checkpoint has exactly the table's tensors (optional ones may be absent) with
 * the table's shapes; one error lists every problem. */
static int check_tensors(const mmm_model *m, const mmm_st_model *st, const char *dir) {
    char missing[1024] = "", shaped[1024] = "", extra[1024] = "";
    int n_missing = 0, n_shaped = 0, n_extra = 0;
    for (int i = 0; i < m->n_params; i++) {
        const mmm_param *p = &m->params[i];
        const mmm_st_tensor *t = mmm_st_model_find(st, p->name);
        if (!t && (p->flags & MMM_PARAM_OPTIONAL)) continue;
        if (!t) {
            note(missing, sizeof missing, &n_missing, "%s%s", n_missing ? ", " : "", p->name);
            continue;
        }
        int same = t->ndim == p->ndim;
        for (int d = 0; same && d < p->ndim; d++) same = t->shape[d] == p->shape[d];
        if (!same) {
            char got[64], want[64], item[400];
            shape_str(got, sizeof got, t->ndim, t->shape);
            shape_str(want, sizeof want, p->ndim, p->shape);
            snprintf(item, sizeof item, "%s is %s, config needs %s", p->name, got, want);
            note(shaped, sizeof shaped, &n_shaped, "%s%s", n_shaped ? "; " : "", item);
        }
    }
    size_t n = mmm_st_model_count(st);
    for (size_t i = 0; i < n; i++) {
        const mmm_st_tensor *t = mmm_st_model_tensor_at(st, i);
        if (!mmm_model_param(m, t->name))
            note(extra, sizeof extra, &n_extra, "%s%s", n_extra ? ", " : "", t->name);
    }
    if (!n_missing && !n_shaped && !n_extra) return MMM_OK;
    char msg[3500];
    int len = snprintf(msg, sizeof msg, "%.1000s: the weights do not match config.json:", dir);
    if (n_missing) len += snprintf(msg + len, sizeof msg - (size_t)len, " %d missing (%s);", n_missing, missing);
    if (n_shaped && len < (int)sizeof msg)
        len += snprintf(msg + len, sizeof msg - (size_t)len, " %d mis-shaped (%s);", n_shaped, shaped);
    if (n_extra && len < (int)sizeof msg)
        snprintf(msg + len, sizeof msg - (size_t)len, " %d unexpected (%s);", n_extra, extra);
    const char *hint = mmm_config_n_mamba_layers(&m->cfg) || !n_extra ? "" :
        strstr(extra, "wvkqgdt") ? " (this looks like an mmMamba student whose config.json does not "
                                  "mark its mamba2 layers in layers_block_type)" : "";
    return mmm_fail(MMM_ERR_FORMAT, "%s%s", msg, hint);
}

int mmm_model_load(mmm_model **out, const char *dir) {
    struct stat st_dir;
    if (stat(dir, &st_dir) != 0)
        return mmm_fail(MMM_ERR_NOT_FOUND, "%s: no such model directory", dir);
    if (!S_ISDIR(st_dir.st_mode))
        return mmm_fail(MMM_ERR_ARG, "%s: a model is a directory with config.json and safetensors", dir);
    char *cfg_path = mmm_path_join(dir, "config.json");
    if (!cfg_path) return mmm_fail(MMM_ERR_NOMEM, "%s: out of memory", dir);
    mmm_config cfg;
    int rc = mmm_config_load(&cfg, cfg_path);
    free(cfg_path);
    if (rc) return rc;
    mmm_model *m = NULL;
    rc = mmm_model_create(&m, &cfg);
    mmm_config_free(&cfg);
    if (rc) return mmm_fail_context(rc, "%s", dir);

    mmm_st_model *st = NULL;
    if ((rc = mmm_st_open_model(&st, dir)) || (rc = check_tensors(m, st, dir))) goto done;
    for (int i = 0; i < m->n_params && !rc; i++) {
        const mmm_param *p = &m->params[i];
        const mmm_st_tensor *t = mmm_st_model_find(st, p->name);
        float *x = m->data + p->offset;
        if (!t) continue; /* an optional tensor the checkpoint lacks stays zero */
        if ((rc = mmm_st_read_f32(t, x, p->numel))) break;
        if (p->flags & MMM_PARAM_UNUSED) continue;
        for (size_t k = 0; k < p->numel; k++)
            if (!isfinite(x[k])) {
                rc = mmm_fail(MMM_ERR_FORMAT, "%s: tensor '%s' holds a non-finite value (%g at "
                              "element %zu)", dir, p->name, x[k], k);
                break;
            }
    }
done:
    mmm_st_close_model(st);
    if (rc) {
        mmm_model_free(m);
        return rc;
    }
    *out = m;
    return MMM_OK;
}

int mmm_model_weights_dtype(const char *dir, mmm_dtype *out) {
    mmm_st_model *st = NULL;
    int rc = mmm_st_open_model(&st, dir);
    if (rc) return rc;
    size_t count[MMM_DTYPE_COUNT] = {0};
    for (size_t i = 0; i < mmm_st_model_count(st); i++) {
        const mmm_st_tensor *t = mmm_st_model_tensor_at(st, i);
        count[t->dtype] += t->numel;
    }
    mmm_st_close_model(st);
    /* the float type holding most elements: a bf16 checkpoint may keep a few tensors in F32 */
    mmm_dtype best = MMM_DTYPE_F32;
    if (count[MMM_DTYPE_BF16] > count[best]) best = MMM_DTYPE_BF16;
    if (count[MMM_DTYPE_F16] > count[best]) best = MMM_DTYPE_F16;
    if (!count[best])
        return mmm_fail(MMM_ERR_FORMAT, "%s: the weights hold no F32, BF16 or F16 tensor", dir);
    *out = best;
    return MMM_OK;
}

/* An auto_map naming the remote-code classes for AutoConfig, AutoModel, AutoModelForCausalLM. */
static cJSON *auto_map(const char *config_class, const char *model_class) {
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "AutoConfig", config_class);
    cJSON_AddStringToObject(m, "AutoModel", model_class);
    cJSON_AddStringToObject(m, "AutoModelForCausalLM", model_class);
    return m;
}

static cJSON *one_string_list(const char *s) {
    cJSON *a = cJSON_CreateArray();
    cJSON_AddItemToArray(a, cJSON_CreateString(s));
    return a;
}

/* The keys by which transformers builds a model from its directory. A student gets the ones
 * upstream mmMamba's conversion script writes (docs/model-format.md), so that
 * AutoModel.from_pretrained(..., trust_remote_code=True) builds the mmMamba modules around the
 * mamba2 weights rather than the teacher's attention model; layers_block_type is written by
 * mmm_config_save. torch_dtype tells the stored weights' dtype. */
static void export_keys(cJSON *root, const mmm_config *c, const char *dir, mmm_dtype dtype) {
    const char *torch_dtype = dtype == MMM_DTYPE_BF16 ? "bfloat16" : dtype == MMM_DTYPE_F16 ? "float16" : "float32";
    cJSON *emb = mmm_json_object_at(root, "embedding_config"), *llm = mmm_json_object_at(root, "llm_config");
    mmm_json_put(root, "torch_dtype", cJSON_CreateString(torch_dtype));
    mmm_json_put(emb, "torch_dtype", cJSON_CreateString(torch_dtype));
    mmm_json_put(llm, "torch_dtype", cJSON_CreateString(torch_dtype));
    if (!mmm_config_n_mamba_layers(c)) return;
    mmm_json_put(root, "_name_or_path", cJSON_CreateString(dir));
    mmm_json_put(root, "model_type", cJSON_CreateString("mmMamba_chat"));
    /* upstream's script stores the two architectures as bare strings; transformers expects
     * lists (the teacher's config class reads architectures[0]) */
    mmm_json_put(root, "architectures", one_string_list("mmMambaChatModel"));
    mmm_json_put(root, "auto_map", auto_map("configuration_mmMamba_chat.mmMambaChatConfig",
                                   "modeling_mmMamba_chat.mmMambaChatModel"));
    mmm_json_put(emb, "model_type", cJSON_CreateString("mmMamba_embedding"));
    mmm_json_put(llm, "model_type", cJSON_CreateString("mmMamba"));
    mmm_json_put(llm, "architectures", one_string_list("mmMambaForCausalLM"));
    mmm_json_put(llm, "auto_map", auto_map("configuration_mmMamba.mmMambaConfig", "modeling_mmMamba.mmMambaForCausalLM"));
}

int mmm_model_save(const mmm_model *m, const char *dir, mmm_dtype dtype, size_t max_shard_bytes) {
    if (dtype != MMM_DTYPE_F32 && dtype != MMM_DTYPE_BF16 && dtype != MMM_DTYPE_F16)
        return mmm_fail(MMM_ERR_ARG, "%s: weights are saved as F32, BF16 or F16", dir);
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return mmm_fail(MMM_ERR_IO, "%s: cannot create directory: %s", dir, strerror(errno));
    mmm_st_writer *w = NULL;
    int rc = mmm_st_writer_new(&w);
    for (int i = 0; i < m->n_params && !rc; i++) {
        const mmm_param *p = &m->params[i];
        rc = mmm_st_writer_add_f32(w, p->name, dtype, p->ndim, p->shape, m->data + p->offset);
    }
    if (!rc) rc = mmm_st_writer_metadata(w, "format", "pt");
    if (!rc) rc = mmm_st_writer_save_sharded(w, dir, max_shard_bytes ? max_shard_bytes : (size_t)-1);
    mmm_st_writer_free(w);
    if (rc) return rc;
    /* config last: a directory with a config.json always has its weights */
    char *cfg_path = mmm_path_join(dir, "config.json");
    mmm_config c = m->cfg; /* the same config with the export keys in its JSON */
    c.json = m->cfg.json ? cJSON_Duplicate(m->cfg.json, 1) : cJSON_CreateObject();
    if (!cfg_path || !c.json) rc = mmm_fail(MMM_ERR_NOMEM, "%s: out of memory", dir);
    if (!rc) {
        export_keys(c.json, &m->cfg, dir, dtype);
        rc = mmm_config_save(&c, cfg_path);
    }
    cJSON_Delete(c.json);
    free(cfg_path);
    return rc;
}
