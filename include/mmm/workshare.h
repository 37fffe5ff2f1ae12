/* Work sharing for steps made of many small dependent stages (one decoding token: a few hundred
 * products and per-head updates). Every thread of a team runs the same program; each stage is a
 * loop of n independent items that the threads claim one at a time from a shared counter, and a
 * thread moves to the next stage once every item of this one is done — not once every thread has
 * arrived. A thread that the system deschedules therefore holds up the others only for an item it
 * has claimed, never for the stages it missed: it finds them done when it runs again
 * (docs/design.md §9, "A decode step on a shared machine"). Items run the same code whichever
 * thread claims them, so results do not depend on the thread count. */
#ifndef MMM_WORKSHARE_H
#define MMM_WORKSHARE_H

#include <stdatomic.h>
#include <stddef.h>

/* A thread's counters for one stage, alone on their cache line: the claims on its home range (a
 * contiguous share of the stage's items, which the thread takes first and in order, so that each
 * thread streams its own part of a weight matrix and its claims touch no other core's line; the
 * others take from it once theirs is gone) and the items this thread has finished. */
typedef struct {
    atomic_int claimed, done;
    char pad[56];
} mmm_ws_line;

/* A step's counters, zeroed before the team starts (mmm_ws_reset). */
typedef struct {
    mmm_ws_line *lines; /* (n_stages, threads) */
    int n_stages, threads;
    atomic_llong yielded_ns; /* time the team's threads spent yielding, waiting for claimed items */
} mmm_ws_team;

/* Bytes of lines for a team of `threads` over n_stages stages. */
size_t mmm_ws_lines_bytes(int n_stages, int threads);

/* One thread's position in the step: the stage it reaches next. */
typedef struct {
    mmm_ws_team *team;
    int me;       /* this thread's index in the team, [0, threads) */
    int stage;
    int overflow; /* set when the program has more stages than the team has counters */
} mmm_ws_cursor;

void mmm_ws_reset(mmm_ws_team *t);

/* Runs items [0, n) of the cursor's next stage, as many as this thread claims (its home range,
 * then what is left of the others'), calling fn(ctx, item, tls) for each (tls: the calling
 * thread's own scratch), then waits until all n are done (spinning briefly, then yielding the
 * core, the time yielded added to the team's yielded_ns: a sign that a thread holding an item was
 * descheduled). Every thread of the team makes the same sequence of calls. */
void mmm_ws_for(mmm_ws_cursor *c, int n, void (*fn)(void *ctx, int item, void *tls), void *ctx, void *tls);

#endif
