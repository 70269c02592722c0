/* The content branch, included once per element type after vector_ops.h.
 *
 * Per image and head: keys = softmax over the N positions of k (per channel), ctx = v^T keys
 * (dv x dk), out[n] = ctx q[n]. One task is one image (or a group of its heads when there are
 * fewer images than threads). Every pass walks the image in blocks of CBLOCK positions and, inside
 * a block, over all its heads: a position's channels are one row of the q|k|v map, so the block is
 * read from memory once, in order, and each head's slice of it comes from cache (per-head passes
 * over a whole image ran 2x slower, strided by the map's row). The forward keeps only a summary
 * per (image, head): ctx, the keys' max and 1 / sum; the backward recomputes the keys from k.
 * dims: B, N, h, dk, dv, threads. Strides (strides_t, .o unused): image, position, head, channel.
 */
#define CBLOCK 64

typedef struct {
    job_head_t head;
    const int64_t *dims;
    int64_t j0, j1;  /* this task's heads (of image head.t0 .. t1 as tasks, see crun) */
    strides_t sq, sk, sv, sg, sout, sgq, sgk, sgv;
    const REAL *q, *k, *v, *g;
    REAL *out, *gq, *gk, *gv, *summary;  /* summary (B, h, dv + 2, dk): ctx rows, max, 1 / sum */
} FN(cjob_t);

/* Scratch of one task: block rows (padded copies, keys, results) and each head's small matrices. */
typedef struct {
    int64_t N, h, dk, dv, dkp, dvp;
    REAL *kb, *qb, *eb, *ob;               /* CBLOCK rows of dkp (ob: of max(dkp, dvp)) */
    REAL *ctx, *ctxt, *gctx, *gctxt;       /* per head: (dv, dkp), (dk, dvp), (dv, dkp), (dk, dvp) */
    REAL *mx, *inv, *dot;                  /* per head: dkp */
} FN(cscratch_t);

static int FN(cscratch_init)(FN(cscratch_t) *cs, const int64_t *dims) {
    cs->N = dims[C_N]; cs->h = dims[C_H]; cs->dk = dims[C_DK]; cs->dv = dims[C_DV];
    cs->dkp = round_up(cs->dk, VLEN); cs->dvp = round_up(cs->dv, VLEN);
    int64_t dkp = cs->dkp, w = max64(dkp, cs->dvp), h = cs->h;
    int64_t per_head = 2 * cs->dv * dkp + 2 * cs->dk * cs->dvp + 3 * dkp;
    REAL *m = calloc((size_t)(CBLOCK * (3 * dkp + w) + h * per_head), sizeof(REAL));
    if (!m) return -1;
    cs->kb = m; m += CBLOCK * dkp;  cs->qb = m; m += CBLOCK * dkp;  cs->eb = m; m += CBLOCK * dkp;
    cs->ob = m; m += CBLOCK * w;
    cs->ctx = m; m += h * cs->dv * dkp;   cs->ctxt = m; m += h * cs->dk * cs->dvp;
    cs->gctx = m; m += h * cs->dv * dkp;  cs->gctxt = m; m += h * cs->dk * cs->dvp;
    cs->mx = m; m += h * dkp;  cs->inv = m; m += h * dkp;  cs->dot = m;
    return 0;
}

/* &t[image b, position n, head j] */
static int64_t FN(coff)(strides_t st, int64_t b, int64_t n, int64_t j) { return b * st.b + n * st.s + j * st.j; }

/* Prefetch the block at n0 (heads j0 .. j1, c channels) of a map. */
static inline __attribute__((always_inline)) void FN(prefetch_block)(const REAL *t, strides_t st, int64_t b, int64_t n0, int64_t N,
                                                                  int64_t j0, int64_t j1, int64_t c, int write) {
    if (n0 >= N) return;
    for (int64_t j = j0; j < j1; j++) FN(prefetch_rows)(t + FN(coff)(st, b, n0, j), st, min64(CBLOCK, N - n0), c, write);
}

static inline VEC FN(vmax)(VEC a, VEC b) {
    typedef int64_t lvec __attribute__((vector_size(VLEN * sizeof(REAL))));
    lvec gt = (lvec)(b > a);  /* false for NaN: a NaN never becomes the max (its exp stays NaN) */
    return (VEC)((gt & (lvec)b) | (~gt & (lvec)a));
}

/* m (dv, dkp) -> mt (dk, dvp) */
static void FN(transpose)(REAL *mt, const REAL *m, const FN(cscratch_t) *cs) {
    for (int64_t c = 0; c < cs->dv; c++)
        for (int64_t d = 0; d < cs->dk; d++) mt[d * cs->dvp + c] = m[c * cs->dkp + d];
}

/* The block's k rows of head j as vector rows (in place or a padded copy). */
static const REAL *FN(k_rows)(FN(cscratch_t) *cs, const FN(cjob_t) *jb, int64_t b, int64_t n0, int64_t nb, int64_t j, int64_t *rs) {
    return FN(vector_rows)(jb->k + FN(coff)(jb->sk, b, n0, j), jb->sk, nb, cs->dk, cs->kb, rs);
}

/* eb[n] = exp(k[n] - max) (* scale when given), and sum += those (when given). */
static void FN(exp_rows)(FN(cscratch_t) *cs, const REAL *rows, int64_t rs, int64_t nb, const REAL *mx,
                         const REAL *scale, REAL *sum) {
    for (int64_t x = 0; x < cs->dkp; x += VLEN) {
        VEC m = *(const VEC *)(mx + x), acc = {0};
        for (int64_t n = 0; n < nb; n++) {
            VEC e = FN(vexp)(*(const VEC *)(rows + n * rs + x) - m);
            if (scale) e *= *(const VEC *)(scale + x);
            *(VEC *)(cs->eb + n * cs->dkp + x) = e;
            acc += e;
        }
        if (sum) *(VEC *)(sum + x) += acc;
    }
}

/* Forward of image b, heads j0 .. j1: the keys' max, then exp, sums and ctx, then out. */
static void FN(content_forward_image)(FN(cscratch_t) *cs, const FN(cjob_t) *jb, int64_t b) {
    int64_t N = cs->N, dkp = cs->dkp, dvp = cs->dvp, dv = cs->dv, rs, os;
    REAL *sum = cs->dot;  /* per head: dkp, reused */
    for (int64_t j = jb->j0; j < jb->j1; j++)
        for (int64_t x = 0; x < dkp; x++) { cs->mx[j * dkp + x] = -INFINITY; sum[j * dkp + x] = 0; }
    for (int64_t n0 = 0; n0 < N; n0 += CBLOCK) {
        FN(prefetch_block)(jb->k, jb->sk, b, n0 + CBLOCK, N, jb->j0, jb->j1, cs->dk, 0);
        for (int64_t j = jb->j0, nb = min64(CBLOCK, N - n0); j < jb->j1; j++) {
            const REAL *rows = FN(k_rows)(cs, jb, b, n0, nb, j, &rs);
            for (int64_t x = 0; x < dkp; x += VLEN) {
                VEC m = *(VEC *)(cs->mx + j * dkp + x);
                for (int64_t n = 0; n < nb; n++) m = FN(vmax)(m, *(const VEC *)(rows + n * rs + x));
                *(VEC *)(cs->mx + j * dkp + x) = m;
            }
        }
    }
    for (int64_t n0 = 0; n0 < N; n0 += CBLOCK) {
        FN(prefetch_block)(jb->v, jb->sv, b, n0 + CBLOCK, N, jb->j0, jb->j1, dv, 0);
        for (int64_t j = jb->j0, nb = min64(CBLOCK, N - n0); j < jb->j1; j++) {
            const REAL *rows = FN(k_rows)(cs, jb, b, n0, nb, j, &rs);
            FN(exp_rows)(cs, rows, rs, nb, cs->mx + j * dkp, NULL, sum + j * dkp);
            FN(gemm_rows)(cs->ctx + j * dv * dkp, dkp, jb->v + FN(coff)(jb->sv, b, n0, j), jb->sv.c, jb->sv.s,
                          cs->eb, 0, dkp, dv, nb, dkp, n0 > 0);  /* ctx[c] += sum_n v[n, c] exp_n */
        }
    }
    for (int64_t j = jb->j0; j < jb->j1; j++) {
        REAL *ctx = cs->ctx + j * dv * dkp, *s = jb->summary + (b * cs->h + j) * (dv + 2) * cs->dk;
        for (int64_t d = 0; d < cs->dk; d++) {
            REAL inv = 1 / sum[j * dkp + d];
            for (int64_t c = 0; c < dv; c++) s[c * cs->dk + d] = ctx[c * dkp + d] *= inv;
            s[dv * cs->dk + d] = cs->mx[j * dkp + d];
            s[(dv + 1) * cs->dk + d] = inv;
        }
        FN(transpose)(cs->ctxt + j * cs->dk * dvp, ctx, cs);
    }
    for (int64_t n0 = 0; n0 < N; n0 += CBLOCK) {
        FN(prefetch_block)(jb->q, jb->sq, b, n0 + CBLOCK, N, jb->j0, jb->j1, cs->dk, 0);
        FN(prefetch_block)(jb->out, jb->sout, b, n0 + CBLOCK, N, jb->j0, jb->j1, dv, 1);
        for (int64_t j = jb->j0, nb = min64(CBLOCK, N - n0); j < jb->j1; j++) {
            REAL *out = jb->out + FN(coff)(jb->sout, b, n0, j), *rows = FN(output_rows)(out, jb->sout, dv, cs->ob, &os);
            FN(gemm_rows)(rows, os, jb->q + FN(coff)(jb->sq, b, n0, j), jb->sq.s, jb->sq.c, cs->ctxt + j * cs->dk * dvp,
                          0, dvp, nb, cs->dk, dvp, FN(in_place_acc)(rows, out, jb->dims[C_ACC1]));  /* out[n] = ctx q[n] */
            FN(flush_rows)(out, jb->sout, rows, nb, dv, jb->dims[C_ACC1]);
        }
    }
}

/* Rows for one gradient block of head j: the destination or ob; returns them, and their stride. */
static REAL *FN(grad_rows)(FN(cscratch_t) *cs, REAL *base, strides_t st, int64_t b, int64_t n0, int64_t j, int64_t c,
                           REAL **dst, int64_t *rs) {
    *dst = base + FN(coff)(st, b, n0, j);
    return FN(output_rows)(*dst, st, c, cs->ob, rs);
}

/* Backward of image b, head by head (its rows stay in L2 between the two passes): gctx =
 * sum_n g[n] q[n]^T first, then per block the keys (recomputed), gq = ctx^T g, gk = the softmax
 * gradient of gctx^T v, gv = gctx keys. */
static void FN(content_backward_head)(FN(cscratch_t) *cs, const FN(cjob_t) *jb, int64_t b, int64_t j) {
    int64_t N = cs->N, dk = cs->dk, dv = cs->dv, dkp = cs->dkp, dvp = cs->dvp, rs, qs;
    const int64_t *acc = jb->dims + C_ACC1;  /* add into grad q, grad v */
    const REAL *s = jb->summary + (b * cs->h + j) * (dv + 2) * dk;
    for (int64_t d = 0; d < dk; d++) {
        for (int64_t c = 0; c < dv; c++) cs->ctx[c * dkp + d] = s[c * dk + d];
        cs->mx[d] = s[dv * dk + d];
        cs->inv[d] = s[(dv + 1) * dk + d];
    }
    for (int64_t n0 = 0, nb; n0 < N; n0 += CBLOCK) {
        nb = min64(CBLOCK, N - n0);
        FN(prefetch_block)(jb->q, jb->sq, b, n0 + CBLOCK, N, j, j + 1, dk, 0);
        FN(prefetch_block)(jb->g, jb->sg, b, n0 + CBLOCK, N, j, j + 1, dv, 0);
        const REAL *qrows = FN(vector_rows)(jb->q + FN(coff)(jb->sq, b, n0, j), jb->sq, nb, dk, cs->qb, &qs);
        FN(gemm_rows)(cs->gctx, dkp, jb->g + FN(coff)(jb->sg, b, n0, j), jb->sg.c, jb->sg.s,
                      qrows, 0, qs, dv, nb, dkp, n0 > 0);  /* gctx[c] += sum_n g[n, c] q[n] */
    }
    FN(transpose)(cs->gctxt, cs->gctx, cs);
    for (int64_t d = 0; d < dk; d++) {  /* sum_n keys[n, d] grad keys[n, d] = sum_c gctx[c, d] ctx[c, d] */
        cs->dot[d] = 0;
        for (int64_t c = 0; c < dv; c++) cs->dot[d] += cs->gctx[c * dkp + d] * cs->ctx[c * dkp + d];
    }
    for (int64_t n0 = 0, nb; n0 < N; n0 += CBLOCK) {
        nb = min64(CBLOCK, N - n0);
        FN(prefetch_block)(jb->k, jb->sk, b, n0 + CBLOCK, N, j, j + 1, dk, 0);
        FN(prefetch_block)(jb->v, jb->sv, b, n0 + CBLOCK, N, j, j + 1, dv, 0);
        FN(prefetch_block)(jb->gq, jb->sgq, b, n0 + CBLOCK, N, j, j + 1, dk, 1);
        FN(prefetch_block)(jb->gk, jb->sgk, b, n0 + CBLOCK, N, j, j + 1, dk, 1);
        FN(prefetch_block)(jb->gv, jb->sgv, b, n0 + CBLOCK, N, j, j + 1, dv, 1);
        const REAL *g = jb->g + FN(coff)(jb->sg, b, n0, j), *v = jb->v + FN(coff)(jb->sv, b, n0, j);
        const REAL *krows = FN(k_rows)(cs, jb, b, n0, nb, j, &rs);
        FN(exp_rows)(cs, krows, rs, nb, cs->mx, cs->inv, NULL);  /* eb: the keys */
        REAL *dst, *rows = FN(grad_rows)(cs, jb->gq, jb->sgq, b, n0, j, dk, &dst, &rs);
        FN(gemm_rows)(rows, rs, g, jb->sg.s, jb->sg.c, cs->ctx, 0, dkp, nb, dv, dkp, FN(in_place_acc)(rows, dst, acc[0]));
        FN(flush_rows)(dst, jb->sgq, rows, nb, dk, acc[0]);
        rows = FN(grad_rows)(cs, jb->gk, jb->sgk, b, n0, j, dk, &dst, &rs);
        FN(gemm_rows)(rows, rs, v, jb->sv.s, jb->sv.c, cs->gctx, 0, dkp, nb, dv, dkp, 0);
        for (int64_t n = 0; n < nb; n++)  /* grad k = keys (grad keys - dot) */
            for (int64_t d = 0; d < dk; d++) rows[n * rs + d] = cs->eb[n * dkp + d] * (rows[n * rs + d] - cs->dot[d]);
        FN(flush_rows)(dst, jb->sgk, rows, nb, dk, 0);
        rows = FN(grad_rows)(cs, jb->gv, jb->sgv, b, n0, j, dv, &dst, &rs);
        FN(gemm_rows)(rows, rs, cs->eb, dkp, 1, cs->gctxt, 0, dvp, nb, dk, dvp, FN(in_place_acc)(rows, dst, acc[1]));
        FN(flush_rows)(dst, jb->sgv, rows, nb, dv, acc[1]);
    }
}

static void *FN(content_forward_job)(void *arg) {
    FN(cjob_t) *jb = arg;
    FN(cscratch_t) cs;
    if (FN(cscratch_init)(&cs, jb->dims)) { jb->head.status = -1; return NULL; }
    for (int64_t b = jb->head.t0; b < jb->head.t1; b++) FN(content_forward_image)(&cs, jb, b);
    free(cs.kb);
    return NULL;
}

static void *FN(content_backward_job)(void *arg) {
    FN(cjob_t) *jb = arg;
    FN(cscratch_t) cs;
    if (FN(cscratch_init)(&cs, jb->dims)) { jb->head.status = -1; return NULL; }
    for (int64_t b = jb->head.t0; b < jb->head.t1; b++)
        for (int64_t j = jb->j0; j < jb->j1; j++) FN(content_backward_head)(&cs, jb, b, j);
    free(cs.kb);
    return NULL;
}

/* Jobs: contiguous ranges of images with all heads; with fewer images than threads, each image's
 * heads are split into groups (one job per image and group). */
static int FN(crun)(void *(*fn)(void *), const int64_t *dims, FN(cjob_t) proto) {
    int64_t B = dims[C_B], h = dims[C_H], threads = max64(1, dims[C_THREADS]);
    FN(cjob_t) *jobs = malloc(sizeof(FN(cjob_t)) * 256);
    if (!jobs) return -1;
    proto.j0 = 0;
    proto.j1 = h;
    int64_t n = 0;
    if (B >= threads) {
        n = split_jobs((char *)jobs, &proto, sizeof(FN(cjob_t)), B, threads);
    } else {
        int64_t groups = max64(1, min64(h, min64(256 / B, (threads + B - 1) / B)));
        for (int64_t b = 0; b < B; b++)
            for (int64_t i = 0; i < groups; i++, n++) {
                jobs[n] = proto;
                jobs[n].head.t0 = b;
                jobs[n].head.t1 = b + 1;
                jobs[n].j0 = h * i / groups;
                jobs[n].j1 = h * (i + 1) / groups;
            }
    }
    int status = run_jobs(fn, (char *)jobs, sizeof(FN(cjob_t)), n, threads);
    free(jobs);
    return status;
}

static void FN(cstrides)(strides_t **st, int count, const int64_t *strides) {
    for (int i = 0; i < count; i++)
        *st[i] = (strides_t){strides[4 * i], strides[4 * i + 1], 0, strides[4 * i + 2], strides[4 * i + 3]};
}

/* Strides: q, k, v, out (4 each: image, position, head, channel). k is softmax-normalised over the
 * positions here; summary (B, h, dv + 2, dk) contiguous receives ctx, the keys' max and 1 / sum.
 * Returns 0, or -1 out of memory. */
int FN(gsa_content_forward)(const int64_t *dims, const int64_t *strides, const REAL *q, const REAL *k,
                             const REAL *v, REAL *out, REAL *summary) {
    FN(cjob_t) proto = {.dims = dims, .q = q, .k = k, .v = v, .out = out, .summary = summary};
    FN(cstrides)((strides_t *[]){&proto.sq, &proto.sk, &proto.sv, &proto.sout}, 4, strides);
    return FN(crun)(FN(content_forward_job), dims, proto);
}

/* Strides: q, k, v, g, gq, gk, gv (4 each); summary from the forward. gk is the gradient of the
 * pre-softmax k (overwritten); gq and gv are added to with the C_ACC1 / C_ACC2 flags. */
int FN(gsa_content_backward)(const int64_t *dims, const int64_t *strides, const REAL *q, const REAL *k,
                              const REAL *v, const REAL *g, const REAL *summary, REAL *gq, REAL *gk, REAL *gv) {
    FN(cjob_t) proto = {.dims = dims, .q = q, .k = k, .v = v, .g = g, .gq = gq, .gk = gk, .gv = gv,
                        .summary = (REAL *)summary};
    FN(cstrides)((strides_t *[]){&proto.sq, &proto.sk, &proto.sv, &proto.sg, &proto.sgq, &proto.sgk, &proto.sgv}, 7, strides);
    return FN(crun)(FN(content_backward_job), dims, proto);
}

#undef CBLOCK
