/* Processes that train together (data parallelism, docs/design.md §11): each computes the
 * gradients of its share of a global batch, and the sums are made the same on every process.
 *
 * The processes find each other as the launchers of the field tell them to: torchrun (and
 * `mmm train --ranks N`) set RANK and WORLD_SIZE, Open MPI's mpirun sets OMPI_COMM_WORLD_RANK and
 * OMPI_COMM_WORLD_SIZE, Slurm's srun SLURM_PROCID and SLURM_NTASKS; rank 0 listens on
 * MASTER_ADDR:MASTER_PORT (127.0.0.1:29500 unless set) and the others connect to it over TCP.
 * Sums are made on rank 0 in rank order and sent back, so every rank holds the same bits and a
 * run is deterministic for a given number of ranks. A rank that stops closes its connection and
 * the others fail with a message naming it instead of waiting; a rank that hangs is given up
 * after MMM_COMM_TIMEOUT seconds (default 600). */
#ifndef MMM_COMM_H
#define MMM_COMM_H
#include <stddef.h>

typedef struct mmm_comm mmm_comm;

/* The ranks the environment describes. *out = NULL (and MMM_OK) for a single process.
 * fingerprint: what must be the same on every rank (the run's settings); a rank whose
 * fingerprint differs from rank 0's is refused at start, on both sides. */
int mmm_comm_from_env(const char *fingerprint, mmm_comm **out);

/* Rank `rank` of `size` through rank 0 at addr:port, waiting up to timeout_s seconds for all to
 * join. */
int mmm_comm_connect(int rank, int size, const char *addr, int port, const char *fingerprint, double timeout_s,
                     mmm_comm **out);

int mmm_comm_rank(const mmm_comm *c);
int mmm_comm_size(const mmm_comm *c);

/* x = Σ over ranks of x (rank order), on every rank. */
int mmm_comm_sum_f32(mmm_comm *c, float *x /* (n) */, size_t n);
int mmm_comm_sum_f64(mmm_comm *c, double *x /* (n) */, size_t n);
/* buf of rank 0 onto every rank. */
int mmm_comm_bcast(mmm_comm *c, void *buf /* (bytes) */, size_t bytes);

void mmm_comm_free(mmm_comm *c);

#endif
