/* The axial step, included once per element type after vector_ops.h. */

#define PAD (2 * VLEN) /* zero offsets on both sides of a transposed embedding row */
#define DLG_PAD 8       /* >= the tallest register tile - 1: tiles read a few entries past the map */
#define DLG(ln, a, a2) ((ln)->dlg + (a) * (ln)->ds + DLG_PAD + (a2)) /* &dlg[a, a'] */
#define LG_PAD 16       /* >= SKEW_ROWS + VLEN - 2: the overhang of dense_logits' shifted stores */
#define LG(ln, a, a2) ((ln)->lg + (a) * (ln)->ls + LG_PAD + (a2)) /* &lg[a, a'] */
#ifdef __AVX512VL__     /* dense_logits' register tile: rows x vectors accumulators */
#define SKEW_ROWS 4
#define SKEW_VECS 5
#else
#define SKEW_ROWS 2
#define SKEW_VECS 4
#endif

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

/* Window of position a (clipped to the map) and its cover by whole vectors. */
static void FN(window)(const FN(line_t) *ln, int64_t a, int64_t *lo, int64_t *hi, int64_t *lo_v, int64_t *hi_v) {
    *lo = max64(0, a - ln->c);
    *hi = min64(ln->S - 1, a + ln->c);
    *lo_v = *lo / VLEN * VLEN;
    *hi_v = round_up(*hi + 1, VLEN);
}

/* Rows a .. a+u-1 of a dense line's logits, tile columns x0 .. x0 + n * VLEN: row a+w at tile column
 * i holds offset o0 + i (o0 = c - a - (u - 1)), which is lg[a + w, w - (u - 1) + i]. Every row reads
 * the same embedding vectors (one load for u rows; a row-by-row product reloads shifted ones) and
 * its results are stored shifted by w into place; what falls outside the map lands in lg's padding. */
static inline __attribute__((always_inline)) void FN(skew_tile)(FN(line_t) *ln, const REAL *rt, int64_t a, int64_t x0,
                                                             int n, int u) {
    VEC acc[SKEW_ROWS * SKEW_VECS];
    for (int i = 0; i < n * u; i++) acc[i] = (VEC){0};
    const REAL *r = rt + PAD + ln->c - a - (u - 1) + x0, *q = ln->q + a * ln->stq.s;
    for (int64_t k = 0; k < ln->dk; k++) {
        VEC xs[SKEW_ROWS];
        for (int w = 0; w < u; w++) xs[w] = (VEC){0} + q[w * ln->stq.s + k * ln->stq.c];
        for (int b = 0; b < n; b++) {
            VEC rv = *(const VEC *)(r + k * ln->Lp + b * VLEN);
            KEEP_IN_REGISTER(rv);
            for (int w = 0; w < u; w++) acc[w * n + b] += xs[w] * rv;
        }
    }
    for (int w = 0; w < u; w++)
        for (int b = 0; b < n; b++) *(VEC *)LG(ln, a + w, w - (u - 1) + x0 + b * VLEN) = acc[w * n + b];
}

/* A dense line's logits: tiles of SKEW_ROWS rows (single rows for the rest), their S + u - 1
 * columns in chunks of SKEW_VECS vectors. */
static void FN(dense_logits)(FN(line_t) *ln, const REAL *rt) {
    int64_t a = 0;
    for (; a + SKEW_ROWS <= ln->S; a += SKEW_ROWS)
        for (int64_t x0 = 0, cols = round_up(ln->S + SKEW_ROWS - 1, VLEN); x0 < cols; x0 += SKEW_VECS * VLEN) {
            if (cols - x0 >= SKEW_VECS * VLEN) FN(skew_tile)(ln, rt, a, x0, SKEW_VECS, SKEW_ROWS);
            else for (int n = 1; n < SKEW_VECS; n++) if ((cols - x0) == n * VLEN) FN(skew_tile)(ln, rt, a, x0, n, SKEW_ROWS);
        }
    for (; a < ln->S; a++)
        for (int64_t x0 = 0, cols = ln->Sp; x0 < cols; x0 += SKEW_VECS * VLEN) {
            if (cols - x0 >= SKEW_VECS * VLEN) FN(skew_tile)(ln, rt, a, x0, SKEW_VECS, 1);
            else for (int n = 1; n < SKEW_VECS; n++) if ((cols - x0) == n * VLEN) FN(skew_tile)(ln, rt, a, x0, n, 1);
        }
}

/* lg[a, a'] = q[a] . rel[a' - a + c] for a' in the window's cover (exact inside the window). A dense
 * line of at least 4 vectors takes the shared-load tiles (measured: at 32 floats 1.15x faster than
 * one batch of rows whose embedding row shifts by one per row; at 16 and 8 floats, 1.5x slower). */
static void FN(logits)(FN(line_t) *ln, const REAL *rt) {
    if (ln->dense && ln->S >= 4 * VLEN) {
        FN(dense_logits)(ln, rt);
        return;
    }
    if (ln->dense) {
        FN(gemm_rows)(LG(ln, 0, 0), ln->ls, ln->q, ln->stq.s, ln->stq.c, rt + PAD + ln->c, -1, ln->Lp, ln->S, ln->dk, ln->Sp, 0);
        return;
    }
    for (int64_t a = 0, lo, hi, lo_v, hi_v; a < ln->S; a++) {
        FN(window)(ln, a, &lo, &hi, &lo_v, &hi_v);
        FN(gemm_rows)(LG(ln, a, lo_v), 0, ln->q + a * ln->stq.s, 0, ln->stq.c,
                      rt + PAD + ln->c - a + lo_v, 0, ln->Lp, 1, ln->dk, hi_v - lo_v, 0);
    }
}

/* y[a] = sum_{a' in window(a)} lg[a, a'] v[a'] into rows y (row stride ys). */
static void FN(apply)(FN(line_t) *ln, REAL *y, int64_t ys, int acc) {
    if (ln->dense) {
        FN(gemm_rows)(y, ys, LG(ln, 0, 0), ln->ls, 1, ln->vrows, 0, ln->vrs, ln->S, ln->S, ln->dvp, acc);
        return;
    }
    for (int64_t a = 0, lo, hi, lo_v, hi_v; a < ln->S; a++) {
        FN(window)(ln, a, &lo, &hi, &lo_v, &hi_v);
        FN(combine)(y + a * ys, LG(ln, a, lo), 1, ln->vrows + lo * ln->vrs, ln->vrs, hi - lo + 1, ln->dvp, acc);
    }
}

/* Rows per register tile of gemm_rows for a width (see TILE_ROWS there). */
static int64_t FN(tile_rows)(int64_t width) {
    return width >= 4 * VLEN ? WIDE_ROWS(2) : width >= 2 * VLEN ? WIDE_ROWS(4) : 8;
}

/* dq[a] = sum_a' dlg[a, a'] rel[a' - a + c] on a dense line, by offsets: a tile of u rows shares
 * each rel row (one load for u rows); entries past the map read dlg's zero padding. */
static void FN(dense_dq)(FN(line_t) *ln, const REAL *rp, REAL *dq, int64_t dqs, int acc) {
    int64_t S = ln->S, u = FN(tile_rows)(ln->dkp);
    for (int64_t a0 = 0; a0 < S; a0 += u) {
        int64_t rows = min64(u, S - a0), o_lo = ln->c - a0 - rows + 1;
        FN(gemm_rows)(dq + a0 * dqs, dqs, DLG(ln, a0, 1 - rows), ln->ds + 1, 1, rp + o_lo * ln->dkp, 0, ln->dkp,
                      rows, S + rows - 1, ln->dkp, acc);
    }
}

/* drel[o] += sum_a dlg[a, a + o - c] q[a] over the offsets that land in the map: a tile of u
 * offsets shares each q row, over the union of their positions (the rest reads zero padding). */
static void FN(rel_grads)(FN(line_t) *ln, REAL *drp) {
    int64_t S = ln->S, u = FN(tile_rows)(ln->dkp), o_end = min64(ln->L, ln->c + S);
    for (int64_t o0 = max64(0, ln->c - S + 1); o0 < o_end; o0 += u) {
        int64_t rows = min64(u, o_end - o0), off0 = o0 - ln->c;
        int64_t a0 = max64(0, -(off0 + rows - 1)), a1 = min64(S, S - off0);
        FN(gemm_rows)(drp + o0 * ln->dkp, ln->dkp, DLG(ln, a0, a0 + off0), 1, ln->ds + 1,
                      ln->qrows + a0 * ln->qrs, 0, ln->qrs, rows, a1 - a0, ln->dkp, 1);
    }
}

/* Backward of one line: dlg = g v^T, dq[a] = sum_a' dlg[a, a'] rel[a' - a + c] into rows dq,
 * dv[a] = sum_a' lg[a', a] g[a'] (the window is symmetric) into rows dv. */
static void FN(line_grads)(FN(line_t) *ln, const REAL *rp, REAL *dq, int64_t dqs, int qacc, REAL *dv, int64_t dvs, int vacc) {
    int64_t S = ln->S, Sp = ln->Sp, gs = ln->stg.s, gc = ln->stg.c;
    if (ln->dense) {
        FN(gemm_rows)(DLG(ln, 0, 0), ln->ds, ln->g, gs, gc, ln->vt, 0, Sp, S, ln->dv, Sp, 0);
        FN(dense_dq)(ln, rp, dq, dqs, qacc);
        FN(gemm_rows)(dv, dvs, LG(ln, 0, 0), 1, ln->ls, ln->grows, 0, ln->grs, S, S, ln->dvp, vacc);
        return;
    }
    for (int64_t a = 0, lo, hi, lo_v, hi_v; a < S; a++) {
        FN(window)(ln, a, &lo, &hi, &lo_v, &hi_v);
        FN(combine)(DLG(ln, a, lo_v), ln->g + a * gs, gc, ln->vt + lo_v, Sp, ln->dv, hi_v - lo_v, 0);
        FN(combine)(dq + a * dqs, DLG(ln, a, lo), 1, rp + (lo - a + ln->c) * ln->dkp, ln->dkp,
                    hi - lo + 1, ln->dkp, qacc);
        FN(combine)(dv + a * dvs, LG(ln, lo, a), ln->ls, ln->grows + lo * ln->grs, ln->grs, hi - lo + 1, ln->dvp, vacc);
    }
}

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

/* Prefetch a line's (S, c) rows: along each position's channels, or each channel's positions. */
static inline __attribute__((always_inline)) void FN(prefetch_rows)(const REAL *p, strides_t st, int64_t S, int64_t c, int write) {
    if (st.c <= st.s)
        for (int64_t a = 0; a < S; a++) prefetch_span(p + a * st.s, (int64_t)sizeof(REAL) * ((c - 1) * st.c + 1), write);
    else
        for (int64_t i = 0; i < c; i++) prefetch_span(p + i * st.c, (int64_t)sizeof(REAL) * ((S - 1) * st.s + 1), write);
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
