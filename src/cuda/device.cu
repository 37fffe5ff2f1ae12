/* Device selection, memory, streams, graphs and events. cudart is linked statically, so a binary
 * without a GPU driver starts and only mmm_cuda_init reports the missing device. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.cuh"

struct mmm_cuda_stream_s { cudaStream_t s; };
struct mmm_cuda_graph_s { cudaGraph_t graph; cudaGraphExec_t exec; };
struct mmm_cuda_event_s { cudaEvent_t e; };

static cudaStream_t g_stream;
static int g_sm_count = 1;
static bool g_pdl;

cudaStream_t cu_stream(void) { return g_stream; }
int cu_sm_count(void) { return g_sm_count; }
bool cu_has_pdl(void) { return g_pdl; }

int cu_check(cudaError_t e, const char *what) {
    if (e == cudaSuccess) return MMM_OK;
    cudaGetLastError(); /* clear a non-sticky error so the next call starts clean */
    return mmm_fail(e == cudaErrorMemoryAllocation ? MMM_ERR_NOMEM : MMM_ERR_IO, "cuda: %s: %s",
                    what, cudaGetErrorString(e));
}

int cu_allow_smem(const void *kernel, size_t bytes, const char *what) {
    return cu_check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         (int)bytes), what);
}

int mmm_cuda_init(int device, mmm_cuda_info *info) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
        cudaGetLastError();
        return mmm_fail(MMM_ERR_UNSUPPORTED, "cuda: no usable GPU (%s)",
                        e != cudaSuccess ? cudaGetErrorString(e) : "no device found");
    }
    if (device < 0 || device >= n)
        return mmm_fail(MMM_ERR_ARG, "cuda: device %d does not exist (%d found)", device, n);
    cudaDeviceProp p;
    int rc = cu_check(cudaSetDevice(device), "selecting the device");
    if (!rc) rc = cu_check(cudaGetDeviceProperties(&p, device), "reading device properties");
    if (!rc) rc = cu_check(cudaFree(0), "creating the context");
    if (rc) return rc;
    if (p.major < 8)
        return mmm_fail(MMM_ERR_UNSUPPORTED, "cuda: %s has compute capability %d.%d; mmm needs "
                        "8.0 or newer (bf16 tensor cores)", p.name, p.major, p.minor);
    g_sm_count = p.multiProcessorCount;
    const char *pdl = getenv("MMM_CUDA_PDL"); /* MMM_CUDA_PDL=0: plain launches, for A/B timing */
    g_pdl = p.major >= 9 && !(pdl && !strcmp(pdl, "0"));
    if (info) {
        memset(info, 0, sizeof *info);
        snprintf(info->name, sizeof info->name, "%s", p.name);
        info->cc_major = p.major;
        info->cc_minor = p.minor;
        info->sm_count = p.multiProcessorCount;
        info->total_mem = p.totalGlobalMem;
        info->l2_bytes = (size_t)p.l2CacheSize;
        info->smem_optin = p.sharedMemPerBlockOptin;
    }
    return MMM_OK;
}

int mmm_cuda_malloc(void **ptr, size_t bytes) {
    *ptr = NULL;
    cudaError_t e = cudaMalloc(ptr, bytes ? bytes : 1);
    if (e != cudaSuccess) {
        cudaGetLastError();
        return mmm_fail(e == cudaErrorMemoryAllocation ? MMM_ERR_NOMEM : MMM_ERR_IO,
                        "cuda: cannot allocate %zu bytes: %s", bytes, cudaGetErrorString(e));
    }
    return MMM_OK;
}

void mmm_cuda_free(void *ptr) {
    if (ptr) cudaFree(ptr);
}

static int copy_sync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind,
                     const char *what) {
    int rc = cu_check(cudaMemcpyAsync(dst, src, bytes, kind, g_stream), what);
    return rc ? rc : cu_check(cudaStreamSynchronize(g_stream), what);
}

int mmm_cuda_upload(void *dst, const void *src, size_t bytes) {
    return copy_sync(dst, src, bytes, cudaMemcpyHostToDevice, "upload");
}

int mmm_cuda_download(void *dst, const void *src, size_t bytes) {
    return copy_sync(dst, src, bytes, cudaMemcpyDeviceToHost, "download");
}

int mmm_cuda_copy(void *dst, const void *src, size_t bytes) {
    return cu_check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, g_stream),
                    "device copy");
}

int mmm_cuda_memset(void *dst, int byte, size_t bytes) {
    return cu_check(cudaMemsetAsync(dst, byte, bytes, g_stream), "memset");
}

int mmm_cuda_sync(void) {
    int rc = cu_check(cudaStreamSynchronize(g_stream), "synchronizing the stream");
    return rc ? rc : cu_check(cudaGetLastError(), "a kernel");
}

int mmm_cuda_mem_info(size_t *free_bytes, size_t *total_bytes) {
    return cu_check(cudaMemGetInfo(free_bytes, total_bytes), "reading memory use");
}

int mmm_cuda_stream_create(mmm_cuda_stream *s) {
    *s = (mmm_cuda_stream)calloc(1, sizeof **s);
    if (!*s) return mmm_fail(MMM_ERR_NOMEM, "cuda: cannot allocate a stream handle");
    int rc = cu_check(cudaStreamCreateWithFlags(&(*s)->s, cudaStreamNonBlocking), "creating a stream");
    if (rc) { free(*s); *s = NULL; }
    return rc;
}

void mmm_cuda_stream_destroy(mmm_cuda_stream s) {
    if (!s) return;
    if (g_stream == s->s) g_stream = 0;
    cudaStreamDestroy(s->s);
    free(s);
}

void mmm_cuda_set_stream(mmm_cuda_stream s) { g_stream = s ? s->s : 0; }

static cudaStream_t g_before_capture; /* the current stream while a capture runs on another */

int mmm_cuda_graph_begin(mmm_cuda_stream s) {
    if (!s) return mmm_fail(MMM_ERR_ARG, "cuda: graph capture needs a stream of its own");
    g_before_capture = g_stream;
    g_stream = s->s;
    int rc = cu_check(cudaStreamBeginCapture(g_stream, cudaStreamCaptureModeThreadLocal),
                      "beginning a graph capture");
    if (rc) g_stream = g_before_capture;
    return rc;
}

int mmm_cuda_graph_end(mmm_cuda_graph *g) {
    *g = (mmm_cuda_graph)calloc(1, sizeof **g);
    cudaGraph_t graph = NULL;
    int rc = cu_check(cudaStreamEndCapture(g_stream, &graph), "ending a graph capture");
    g_stream = g_before_capture;
    if (!rc && !*g) rc = mmm_fail(MMM_ERR_NOMEM, "cuda: cannot allocate a graph handle");
    if (!rc) rc = cu_check(cudaGraphInstantiate(&(*g)->exec, graph, 0), "instantiating a graph");
    if (rc) {
        if (graph) cudaGraphDestroy(graph);
        free(*g);
        *g = NULL;
        return rc;
    }
    (*g)->graph = graph;
    return MMM_OK;
}

int mmm_cuda_graph_launch(mmm_cuda_graph g) {
    return cu_check(cudaGraphLaunch(g->exec, g_stream), "launching a graph");
}

void mmm_cuda_graph_destroy(mmm_cuda_graph g) {
    if (!g) return;
    cudaGraphExecDestroy(g->exec);
    cudaGraphDestroy(g->graph);
    free(g);
}

int mmm_cuda_event_create(mmm_cuda_event *e) {
    *e = (mmm_cuda_event)calloc(1, sizeof **e);
    if (!*e) return mmm_fail(MMM_ERR_NOMEM, "cuda: cannot allocate an event handle");
    int rc = cu_check(cudaEventCreate(&(*e)->e), "creating an event");
    if (rc) { free(*e); *e = NULL; }
    return rc;
}

void mmm_cuda_event_destroy(mmm_cuda_event e) {
    if (!e) return;
    cudaEventDestroy(e->e);
    free(e);
}

int mmm_cuda_event_record(mmm_cuda_event e) {
    return cu_check(cudaEventRecord(e->e, g_stream), "recording an event");
}

int mmm_cuda_event_ms(float *ms, mmm_cuda_event start, mmm_cuda_event end) {
    int rc = cu_check(cudaEventSynchronize(end->e), "waiting for an event");
    return rc ? rc : cu_check(cudaEventElapsedTime(ms, start->e, end->e), "timing events");
}
