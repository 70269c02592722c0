/* The axial step, included once per element type after vector_ops.h. */

#define PAD (2 * VLEN) /* zero offsets on both sides of a transposed embedding row */
#define DLG_PAD 8       /* >= the tallest register tile - 1: tiles read a few entries past the map */
#define DLG(ln, a, a2) ((ln)->dlg + (a) * (ln)->ds + DLG_PAD + (a2)) /* &dlg[a, a'] */
#define LG_PAD 16       /* >= SKEW_ROWS + VLEN - 2 (axial_line_math.h): dense_logits' overhang */
#define LG(ln, a, a2) ((ln)->lg + (a) * (ln)->ls + LG_PAD + (a2)) /* &lg[a, a'] */

typedef struct {
    job_head_t head;
    const int64_t *dims;
    strides_t sq, sv, sg, sout, sgq, sgv;
    const REAL *q, *v, *g, *rt, *rp;
    REAL *out, *gq, *gv, *drp;  /* drp: this job's (h, L, dkp) embedding gradient */
} FN(job_t);

/* Per-line scratch (rows padded to whole vectors, zeros in the padding) and the line's operands:
 * scalar operands are read in place with their strides; vector operands in place when their
 * channels are contiguous, else from a padded copy. */
typedef struct {
    int64_t S, Sp, dk, dv, dkp, dvp, L, c, Lp;
    int64_t ds;  /* row stride of dlg: DLG_PAD zero columns, Sp columns, DLG_PAD zero columns */
    int64_t ls;  /* row stride of lg: LG_PAD columns each side of Sp */
    int dense;  /* every window covers the whole line (c >= S - 1) */
    REAL *sq, *sv, *sg, *vt, *lg, *dlg, *sy, *sdq;   /* scratch */
    const REAL *q, *v, *g, *qrows, *vrows, *grows;    /* this line's operands */
    strides_t stq, stv, stg;
    int64_t qrs, vrs, grs;
} FN(line_t);

static int FN(line_init)(FN(line_t) *ln, const int64_t *dims) {
    ln->S = dims[D_S]; ln->Sp = round_up(ln->S, VLEN); ln->dk = dims[D_DK]; ln->dv = dims[D_DV];
    ln->dkp = round_up(ln->dk, VLEN); ln->dvp = round_up(ln->dv, VLEN);
    ln->L = dims[D_L]; ln->c = (ln->L - 1) / 2; ln->Lp = ln->L + 2 * PAD; ln->dense = ln->c >= ln->S - 1;
    int64_t S = ln->S, Sp = ln->Sp;
    ln->ds = Sp + 2 * DLG_PAD;
    ln->ls = Sp + 2 * LG_PAD;
    size_t n = (size_t)(S * ln->dkp * 2 + S * ln->dvp * 3 + ln->dv * Sp + S * ln->ls + S * ln->ds);
    REAL *m = calloc(n, sizeof(REAL));
    if (!m) return -1;
    ln->sq = m; m += S * ln->dkp;   ln->sdq = m; m += S * ln->dkp;
    ln->sv = m; m += S * ln->dvp;   ln->sg = m; m += S * ln->dvp;   ln->sy = m; m += S * ln->dvp;
    ln->vt = m; m += ln->dv * Sp;   ln->lg = m; m += S * ln->ls;        ln->dlg = m;
    return 0;
}

#include "axial_line_math.h"

static int64_t FN(base)(strides_t st, int64_t t, const int64_t *dims) {
    int64_t j = t % dims[D_H], p = t / dims[D_H];
    return (p / dims[D_O]) * st.b + (p % dims[D_O]) * st.o + j * st.j;
}

/* Point the line's operands at task t: q, v (and g) in place or through scratch copies. */
static void FN(line_load)(FN(line_t) *ln, const FN(job_t) *jb, int64_t t, int grads) {
    ln->stv = jb->sv; ln->stg = jb->sg;
    /* q is always copied: read in place by the row step (pixels 128 floats apart) its logits
     * product ran 2x slower, measured on a 2-core EPYC */
    FN(gather_rows)(ln->sq, ln->dkp, jb->q + FN(base)(jb->sq, t, jb->dims), jb->sq, ln->S, ln->dk);
    ln->q = ln->qrows = ln->sq;
    ln->stq = (strides_t){0, ln->dkp, 0, 0, 1};
    ln->qrs = ln->dkp;
    ln->v = jb->v + FN(base)(jb->sv, t, jb->dims);
    ln->vrows = FN(vector_rows)(ln->v, jb->sv, ln->S, ln->dv, ln->sv, &ln->vrs);
    if (!grads) return;
    ln->g = jb->g + FN(base)(jb->sg, t, jb->dims);
    ln->grows = FN(vector_rows)(ln->g, jb->sg, ln->S, ln->dv, ln->sg, &ln->grs);
    for (int64_t a = 0; a < ln->S; a++)
        for (int64_t i = 0; i < ln->dv; i++) ln->vt[i * ln->Sp + a] = ln->v[a * ln->stv.s + i * ln->stv.c];
}

/* Prefetch task t's operands (the next line) while this one is computed. */
static inline __attribute__((always_inline)) void FN(prefetch_line)(const FN(job_t) *jb, int64_t t, int grads) {
    if (t >= jb->head.t1) return;
    const int64_t *dims = jb->dims;
    int64_t S = dims[D_S], dk = dims[D_DK], dv = dims[D_DV];
    FN(prefetch_rows)(jb->q + FN(base)(jb->sq, t, dims), jb->sq, S, dk, 0);
    FN(prefetch_rows)(jb->v + FN(base)(jb->sv, t, dims), jb->sv, S, dv, 0);
    if (!grads) {
        FN(prefetch_rows)(jb->out + FN(base)(jb->sout, t, dims), jb->sout, S, dv, 1);
        return;
    }
    FN(prefetch_rows)(jb->g + FN(base)(jb->sg, t, dims), jb->sg, S, dv, 0);
    FN(prefetch_rows)(jb->gq + FN(base)(jb->sgq, t, dims), jb->sgq, S, dk, 1);
    FN(prefetch_rows)(jb->gv + FN(base)(jb->sgv, t, dims), jb->sgv, S, dv, 1);
}

static void *FN(forward_job)(void *arg) {
    FN(job_t) *jb = arg;
    FN(line_t) ln;
    if (FN(line_init)(&ln, jb->dims)) { jb->head.status = -1; return NULL; }
    for (int64_t t = jb->head.t0; t < jb->head.t1; t++) {
        FN(prefetch_line)(jb, t + 1, 0);
        FN(line_load)(&ln, jb, t, 0);
        FN(logits)(&ln, jb->rt + (t % jb->dims[D_H]) * ln.dk * ln.Lp);
        REAL *out = jb->out + FN(base)(jb->sout, t, jb->dims);
        int64_t ys;
        REAL *y = FN(output_rows)(out, jb->sout, ln.dv, ln.sy, &ys);
        FN(apply)(&ln, y, ys, FN(in_place_acc)(y, out, jb->dims[D_ACC1]));
        FN(flush_rows)(out, jb->sout, y, ln.S, ln.dv, jb->dims[D_ACC1]);
    }
    free(ln.sq);
    return NULL;
}

static void *FN(backward_job)(void *arg) {
    FN(job_t) *jb = arg;
    FN(line_t) ln;
    if (FN(line_init)(&ln, jb->dims)) { jb->head.status = -1; return NULL; }
    int64_t S = ln.S;
    for (int64_t t = jb->head.t0; t < jb->head.t1; t++) {
        int64_t j = t % jb->dims[D_H], dqs, dvs;
        FN(prefetch_line)(jb, t + 1, 1);
        FN(line_load)(&ln, jb, t, 1);
        FN(logits)(&ln, jb->rt + j * ln.dk * ln.Lp);
        REAL *gq = jb->gq + FN(base)(jb->sgq, t, jb->dims), *gv = jb->gv + FN(base)(jb->sgv, t, jb->dims);
        REAL *dq = FN(output_rows)(gq, jb->sgq, ln.dk, ln.sdq, &dqs), *dv = FN(output_rows)(gv, jb->sgv, ln.dv, ln.sy, &dvs);
        FN(line_grads)(&ln, jb->rp + j * ln.L * ln.dkp, dq, dqs, FN(in_place_acc)(dq, gq, jb->dims[D_ACC1]),
                       dv, dvs, FN(in_place_acc)(dv, gv, jb->dims[D_ACC2]));
        FN(rel_grads)(&ln, jb->drp + j * ln.L * ln.dkp);
        FN(flush_rows)(gq, jb->sgq, dq, S, ln.dk, jb->dims[D_ACC1]);
        FN(flush_rows)(gv, jb->sgv, dv, S, ln.dv, jb->dims[D_ACC2]);
    }
    free(ln.sq);
    return NULL;
}

/* rel (h, L, dk) contiguous -> rt (h, dk, Lp) transposed with PAD zeros each side, rp (h, L, dkp). */
static void FN(prepare)(const int64_t *dims, const REAL *rel, REAL *rt, REAL *rp) {
    int64_t h = dims[D_H], L = dims[D_L], dk = dims[D_DK], dkp = round_up(dk, VLEN), Lp = L + 2 * PAD;
    memset(rt, 0, sizeof(REAL) * h * dk * Lp);
    memset(rp, 0, sizeof(REAL) * h * L * dkp);
    for (int64_t j = 0; j < h; j++)
        for (int64_t o = 0; o < L; o++)
            for (int64_t d = 0; d < dk; d++) {
                REAL x = rel[(j * L + o) * dk + d];
                rt[(j * dk + d) * Lp + PAD + o] = x;
                rp[(j * L + o) * dkp + d] = x;
            }
}

/* Line tasks: B * O lines of h heads. */
static int64_t FN(line_tasks)(const int64_t *dims) { return dims[D_B] * dims[D_O] * dims[D_H]; }

/* Returns 0, or -1 when out of memory. Strides: q, v, out (5 each, see strides_t). */
int FN(gsa_axial_forward)(const int64_t *dims, const int64_t *strides, const REAL *q, const REAL *v,
                           const REAL *rel, REAL *out) {
    int64_t h = dims[D_H], L = dims[D_L], dk = dims[D_DK];
    REAL *rt = malloc(sizeof(REAL) * h * dk * (L + 2 * PAD)), *rp = malloc(sizeof(REAL) * h * L * round_up(dk, VLEN));
    FN(job_t) *jobs = malloc(sizeof(FN(job_t)) * 256);
    if (!rt || !rp || !jobs) { free(rt); free(rp); free(jobs); return -1; }
    FN(prepare)(dims, rel, rt, rp);
    FN(job_t) proto = {.dims = dims, .q = q, .v = v, .rt = rt, .rp = rp, .out = out};
    memcpy(&proto.sq, strides, sizeof(strides_t));
    memcpy(&proto.sv, strides + 5, sizeof(strides_t));
    memcpy(&proto.sout, strides + 10, sizeof(strides_t));
    int64_t n = split_jobs((char *)jobs, &proto, sizeof(FN(job_t)), FN(line_tasks)(dims), dims[D_THREADS]);
    int status = run_jobs(FN(forward_job), (char *)jobs, sizeof(FN(job_t)), n, dims[D_THREADS]);
    free(rt); free(rp); free(jobs);
    return status;
}

/* Strides: q, v, g, gq, gv (5 each). grel (h, L, dk) contiguous is overwritten. */
int FN(gsa_axial_backward)(const int64_t *dims, const int64_t *strides, const REAL *q, const REAL *v,
                            const REAL *rel, const REAL *g, REAL *gq, REAL *gv, REAL *grel) {
    int64_t h = dims[D_H], L = dims[D_L], dk = dims[D_DK], dkp = round_up(dk, VLEN);
    int64_t per = h * L * dkp;
    FN(job_t) *jobs = malloc(sizeof(FN(job_t)) * 256);
    FN(job_t) proto = {.dims = dims, .q = q, .v = v, .g = g, .gq = gq, .gv = gv};
    memcpy(&proto.sq, strides, sizeof(strides_t));
    memcpy(&proto.sv, strides + 5, sizeof(strides_t));
    memcpy(&proto.sg, strides + 10, sizeof(strides_t));
    memcpy(&proto.sgq, strides + 15, sizeof(strides_t));
    memcpy(&proto.sgv, strides + 20, sizeof(strides_t));
    int64_t n = jobs ? split_jobs((char *)jobs, &proto, sizeof(FN(job_t)), FN(line_tasks)(dims), dims[D_THREADS]) : 0;
    REAL *rt = malloc(sizeof(REAL) * h * dk * (L + 2 * PAD)), *rp = malloc(sizeof(REAL) * per);
    REAL *drp = calloc((size_t)per * max64(1, n), sizeof(REAL));  /* one partial embedding grad per job */
    if (!rt || !rp || !jobs || !drp) { free(rt); free(rp); free(jobs); free(drp); return -1; }
    FN(prepare)(dims, rel, rt, rp);
    for (int64_t i = 0; i < n; i++) { jobs[i].rt = rt; jobs[i].rp = rp; jobs[i].drp = drp + i * per; }
    int status = run_jobs(FN(backward_job), (char *)jobs, sizeof(FN(job_t)), n, dims[D_THREADS]);
    for (int64_t j = 0; j < h; j++)
        for (int64_t o = 0; o < L; o++)
            for (int64_t d = 0; d < dk; d++) {
                REAL sum = 0;
                for (int64_t i = 0; i < n; i++) sum += drp[i * per + (j * L + o) * dkp + d];
                grel[(j * L + o) * dk + d] = sum;
            }
    free(rt); free(rp); free(jobs); free(drp);
    return status;
}

#undef PAD
#undef DLG_PAD
#undef DLG
#undef LG_PAD
#undef LG
#undef SKEW_ROWS
#undef SKEW_VECS
