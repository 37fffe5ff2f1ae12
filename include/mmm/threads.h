/* How many CPU threads mmm computes on: OpenMP's parallel regions and OpenBLAS's GEMMs alike. */
#ifndef MMM_THREADS_H
#define MMM_THREADS_H

/* Sets the thread count of OpenMP and OpenBLAS for this process, and (through OMP_NUM_THREADS and
 * OPENBLAS_NUM_THREADS) for the processes it starts afterwards. Returns MMM_ERR_ARG for n < 1 or
 * n > MMM_MAX_THREADS. Call it before any parallel work, from the main thread. */
#define MMM_MAX_THREADS 1024
int mmm_set_threads(int n);
/* The thread count a parallel region started now would get (OpenMP's). */
int mmm_threads(void);
/* Gives the calling thread the count that mmm_set_threads set, if it was called: a thread
 * started outside OpenMP (pthread_create) otherwise starts from the count the environment gave
 * at program start. Call it first in such a thread before it computes. */
void mmm_threads_adopt(void);

#endif
