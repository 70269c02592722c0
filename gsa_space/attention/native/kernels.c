/* gsa-nas: fused CPU kernels of the GSA module: the axial relative step (below) and the content
 * branch (content_step_body.h).
 *
 * Axial step:
 *
 * out[b, a, o, j, :] = sum_{a' in window(a)} (q[b, a, o, j, :] . rel[j, a' - a + c, :]) * v[b, a', o, j, :]
 * with c = (L - 1) / 2 and the window clipped to the map (docs/gsa.md section 3). Tensors are
 * strided 5-d views (image, position along the step's axis, line, head, channel), so the
 * column and the row step are the same call. One task is one line of one head: its logits
 * (S x S) never leave the core's cache. Built and loaded by gsa_space/attention/native/kernels.py.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define VBYTES 32 /* 8 floats: AVX2 width, two NEON registers */

typedef struct { int64_t b, s, o, j, c; } strides_t;

/* dims: B, S (positions per line), O (lines per image), h, dk, dv, L, threads, then accumulate flags:
 * forward: add into out; backward: add into grad q, into grad v */
enum { D_B, D_S, D_O, D_H, D_DK, D_DV, D_L, D_THREADS, D_ACC1, D_ACC2 };
/* content dims: B, N (positions), h, dk, dv, threads, then accumulate flags: forward: out;
 * backward: grad q, grad v */
enum { C_B, C_N, C_H, C_DK, C_DV, C_THREADS, C_ACC1, C_ACC2 };

static int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }
static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }
static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* Bytes [p, p + len) into the cache, for reading or (write) for writing. A helper that only
 * prefetches must be inlined: GCC deems such a function pure and drops its calls. */
static inline __attribute__((always_inline)) void prefetch_span(const void *p, int64_t len, int write) {
    const char *c = p, *end = c + len;
    if (write) {
        for (; c < end; c += 64) __builtin_prefetch(c, 1, 1);
        __builtin_prefetch(end - 1, 1, 1);
    } else {
        for (; c < end; c += 64) __builtin_prefetch(c, 0, 1);
        __builtin_prefetch(end - 1, 0, 1);
    }
}

/* One load for several products: GCC otherwise folds the load into each FMA (one load each).
 * Only where a vector (VBYTES) fits one register: AVX's ymm, AVX-512's 32 of them. */
#if defined(__GNUC__) && defined(__x86_64__) && defined(__AVX512VL__)
#define KEEP_IN_REGISTER(v) __asm__("" : "+v"(v))
#elif defined(__GNUC__) && defined(__x86_64__) && defined(__AVX__)
#define KEEP_IN_REGISTER(v) __asm__("" : "+x"(v))
#else
#define KEEP_IN_REGISTER(v) ((void)0)
#endif

/* What every job struct starts with: its range of tasks and its status (-1: no scratch). */
typedef struct { int64_t t0, t1; int status; } job_head_t;

/* Jobs per thread when there are several threads: threads take the next job as they finish
 * (dynamic), so a core slowed by other processes holds the call back by one small job at most. */
#define JOBS_PER_THREAD 4

/* Fill jobs (each job_size bytes, job_head_t first) from proto, one contiguous range of the tasks
 * each, at most 256; returns how many. */
static int64_t split_jobs(char *jobs, const void *proto, size_t job_size, int64_t tasks, int64_t threads) {
    int64_t n = min64(threads > 1 ? threads * JOBS_PER_THREAD : 1, min64(tasks, 256));
    for (int64_t i = 0; i < n; i++) {
        job_head_t *head = (job_head_t *)(jobs + i * job_size);
        memcpy(head, proto, job_size);
        head->t0 = tasks * i / n;
        head->t1 = tasks * (i + 1) / n;
    }
    return n;
}

/* Run fn(job_i) for i < n on at most `threads` OpenMP threads; returns the jobs' statuses or-ed.
 * Loaded into a process that holds PyTorch, this library binds to PyTorch's own libgomp (same
 * soname), so the kernel shares its thread pool: separate pthreads would fight PyTorch's
 * spinning workers. */
static int run_jobs(void *(*fn)(void *), char *jobs, size_t job_size, int64_t n, int64_t threads) {
    if (n <= 0) return 0;
#pragma omp parallel for num_threads(min64(n, max64(1, threads))) schedule(dynamic, 1)
    for (int64_t i = 0; i < n; i++) fn(jobs + i * job_size);
    int status = 0;
    for (int64_t i = 0; i < n; i++) status |= ((job_head_t *)(jobs + i * job_size))->status;
    return status;
}

#define REAL float
#define VLEN 8
#define FN(name) name##_f32
#include "vector_ops.h"
#include "axial_step_body.h"
#include "content_step_body.h"
#undef REAL
#undef VLEN
#undef FN
#undef VEC

#define REAL double
#define VLEN 4
#define FN(name) name##_f64
#include "vector_ops.h"
#include "axial_step_body.h"
#include "content_step_body.h"
