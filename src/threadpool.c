/* threadpool.c — a persistent pool of worker threads for the CPU kernels. A decode step issues a
 * few hundred parallel ops, so dispatch must cost far less than a microsecond: workers spin on a
 * generation counter for a while after each job and only then sleep on a condition variable. */
#include "kernels.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#elif defined(__aarch64__)
#define CPU_RELAX() __asm__ __volatile__("yield")
#else
#define CPU_RELAX() ((void)0)
#endif

/* Spin iterations before a worker sleeps: about 0.5-2 ms, longer than the gap between ops of one
 * forward pass, far shorter than the gap between user requests. After PURE_SPIN iterations the
 * waiters also yield the CPU on every round: when the machine is oversubscribed the thread being
 * waited for may need this very core, and when it is not, sched_yield returns at once. */
#define SPIN_ITERS 20000
#define PURE_SPIN 2000

typedef struct worker {
    nbl_threadpool *tp;
    int32_t ith;
    pthread_t th;
} worker;

struct nbl_threadpool {
    int32_t n;
    worker *w;
    void (*fn)(void *, int32_t, int32_t);
    void *ctx;
    _Alignas(64) atomic_uint gen;  /* bumped once per job */
    _Alignas(64) atomic_int done;  /* workers finished with the current job */
    _Alignas(64) atomic_int n_sleeping;
    atomic_int stop;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    void *scratch;
    size_t scratch_size;
};

static void *worker_main(void *arg) {
    worker *w = arg;
    nbl_threadpool *tp = w->tp;
    /* gen is 0 until the first job, which may be posted before this thread gets here. */
    unsigned seen = 0;
    for (;;) {
        unsigned g;
        int spins = 0;
        while ((g = atomic_load_explicit(&tp->gen, memory_order_acquire)) == seen &&
               !atomic_load_explicit(&tp->stop, memory_order_relaxed)) {
            if (++spins < SPIN_ITERS) {
                if (spins < PURE_SPIN) CPU_RELAX();
                else sched_yield();
                continue;
            }
            /* Announce the sleep before re-checking gen; the submitter bumps gen before reading
             * n_sleeping, so one of the two always sees the other (both seq_cst). */
            pthread_mutex_lock(&tp->mu);
            atomic_fetch_add(&tp->n_sleeping, 1);
            while (atomic_load(&tp->gen) == seen && !atomic_load(&tp->stop))
                pthread_cond_wait(&tp->cv, &tp->mu);
            atomic_fetch_sub(&tp->n_sleeping, 1);
            pthread_mutex_unlock(&tp->mu);
            spins = 0;
        }
        if (atomic_load_explicit(&tp->stop, memory_order_relaxed)) break;
        seen = g;
        tp->fn(tp->ctx, w->ith, tp->n);
        atomic_fetch_add_explicit(&tp->done, 1, memory_order_release);
    }
    return NULL;
}

static int32_t online_cpus(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 256 ? 256 : (int32_t)n;
}

nbl_threadpool *nbl_threadpool_new(int32_t n_threads) {
    if (n_threads <= 0) n_threads = online_cpus();
    if (n_threads > 256) n_threads = 256;
    nbl_threadpool *tp = calloc(1, sizeof *tp);
    if (!tp) return NULL;
    tp->n = n_threads;
    atomic_init(&tp->gen, 0);
    atomic_init(&tp->done, 0);
    atomic_init(&tp->n_sleeping, 0);
    atomic_init(&tp->stop, 0);
    if (pthread_mutex_init(&tp->mu, NULL) != 0) {
        free(tp);
        return NULL;
    }
    if (pthread_cond_init(&tp->cv, NULL) != 0) {
        pthread_mutex_destroy(&tp->mu);
        free(tp);
        return NULL;
    }
    tp->w = calloc((size_t)n_threads, sizeof *tp->w);
    if (!tp->w) {
        nbl_threadpool_free(tp);
        return NULL;
    }
    for (int32_t i = 1; i < n_threads; i++) {
        tp->w[i].tp = tp;
        tp->w[i].ith = i;
        if (pthread_create(&tp->w[i].th, NULL, worker_main, &tp->w[i]) != 0) {
            tp->n = i; /* only the threads started so far exist */
            nbl_threadpool_free(tp);
            return NULL;
        }
    }
    return tp;
}

void nbl_threadpool_free(nbl_threadpool *tp) {
    if (!tp) return;
    if (tp->w) {
        pthread_mutex_lock(&tp->mu);
        atomic_store(&tp->stop, 1);
        pthread_cond_broadcast(&tp->cv);
        pthread_mutex_unlock(&tp->mu);
        for (int32_t i = 1; i < tp->n; i++) pthread_join(tp->w[i].th, NULL);
        free(tp->w);
    }
    pthread_cond_destroy(&tp->cv);
    pthread_mutex_destroy(&tp->mu);
    free(tp->scratch);
    free(tp);
}

int32_t nbl_threadpool_size(const nbl_threadpool *tp) { return tp ? tp->n : 1; }

void nbl_threadpool_run(nbl_threadpool *tp, void (*fn)(void *, int32_t, int32_t), void *ctx) {
    if (!tp || tp->n == 1) {
        fn(ctx, 0, 1);
        return;
    }
    tp->fn = fn;
    tp->ctx = ctx;
    atomic_store_explicit(&tp->done, 0, memory_order_relaxed);
    atomic_fetch_add(&tp->gen, 1); /* seq_cst: publishes fn/ctx and orders against n_sleeping */
    if (atomic_load(&tp->n_sleeping) > 0) {
        pthread_mutex_lock(&tp->mu);
        pthread_cond_broadcast(&tp->cv);
        pthread_mutex_unlock(&tp->mu);
    }
    fn(ctx, 0, tp->n);
    for (int spins = 0; atomic_load_explicit(&tp->done, memory_order_acquire) != tp->n - 1; spins++) {
        if (spins < PURE_SPIN) CPU_RELAX();
        else sched_yield();
    }
}

void *nbl_threadpool_scratch(nbl_threadpool *tp, size_t bytes) {
    if (!tp) return NULL;
    if (bytes > tp->scratch_size) {
        size_t sz = bytes + bytes / 4 + 4096;
        sz = (sz + 63) & ~(size_t)63;
        void *p = NULL;
        if (posix_memalign(&p, 64, sz) != 0) return NULL;
        free(tp->scratch);
        tp->scratch = p;
        tp->scratch_size = sz;
    }
    return tp->scratch;
}
