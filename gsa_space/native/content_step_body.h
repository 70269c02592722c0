/* The content branch, included once per element type after vector_ops.h.
 *
 * Per image and head: ctx = v^T keys (dv x dk, keys already softmax-normalised over the N
 * positions), out[n] = ctx q[n]. One task is one (image, head): its rows stay in L2.
 * dims: B, N, h, dk, dv, threads. Strides (strides_t, .o unused): image, position, head, channel.
 */
typedef struct {
    job_head_t head;
    const int64_t *dims;
    strides_t sq, sk, sv, sg, sout, sgq, sgk, sgv;
    const REAL *q, *k, *v, *g;
    REAL *out, *gq, *gk, *gv, *keys;  /* keys: the forward's softmax output, when it computes it */
    strides_t skeys;
} FN(cjob_t);

/* Scratch of one task: padded copies of q and keys rows (used only when the maps' channels do not
 * fill whole vectors), result rows, and the small matrices. */
typedef struct {
    int64_t N, dk, dv, dkp, dvp;
    REAL *q, *k, *g, *oq, *ok, *ov, *ctx, *ctxt, *gctx, *gctxt, *dot;
} FN(cscratch_t);

static int FN(cscratch_init)(FN(cscratch_t) *cs, const int64_t *dims) {
    cs->N = dims[C_N]; cs->dk = dims[C_DK]; cs->dv = dims[C_DV];
    cs->dkp = round_up(cs->dk, VLEN); cs->dvp = round_up(cs->dv, VLEN);
    int64_t N = cs->N, dkp = cs->dkp, dvp = cs->dvp, small = dvp * dkp;
    REAL *m = calloc((size_t)(N * (4 * dkp + 2 * dvp) + 4 * small + dkp), sizeof(REAL));
    if (!m) return -1;
    cs->q = m; m += N * dkp;  cs->k = m; m += N * dkp;  cs->g = m; m += N * dvp;
    cs->oq = m; m += N * dkp; cs->ok = m; m += N * dkp; cs->ov = m; m += N * dvp;
    cs->ctx = m; m += small;  cs->ctxt = m; m += small;
    cs->gctx = m; m += small; cs->gctxt = m; m += small; cs->dot = m;
    return 0;
}

static int64_t FN(cbase)(strides_t st, int64_t t, const int64_t *dims) {
    return (t / dims[C_H]) * st.b + (t % dims[C_H]) * st.j;
}

/* m (dv, dkp) -> mt (dk, dvp) */
static void FN(transpose)(REAL *mt, const REAL *m, const FN(cscratch_t) *cs) {
    for (int64_t c = 0; c < cs->dv; c++)
        for (int64_t d = 0; d < cs->dk; d++) mt[d * cs->dvp + c] = m[c * cs->dkp + d];
}

/* ctx[c] = sum_n v[n, c] keys[n] (dv rows of dkp) and its transpose; v read in place. */
static void FN(context)(FN(cscratch_t) *cs, const REAL *v, strides_t sv, const REAL *keys, int64_t ks) {
    FN(gemm_rows)(cs->ctx, cs->dkp, v, sv.c, sv.s, keys, 0, ks, cs->dv, cs->N, cs->dkp, 0);
    FN(transpose)(cs->ctxt, cs->ctx, cs);
}

/* Keys are softmax(k) over n: grad k[n, d] = keys[n, d] (grad keys[n, d] - sum_n' keys[n', d] grad keys[n', d]),
 * and that sum is sum_c gctx[c, d] ctx[c, d]. Rewrites the (N, dk) grad rows in place. */
static void FN(softmax_grad)(FN(cscratch_t) *cs, REAL *rows, int64_t rs, const REAL *keys, int64_t ks) {
    REAL *dot = cs->dot;
    for (int64_t d = 0; d < cs->dk; d++) {
        dot[d] = 0;
        for (int64_t c = 0; c < cs->dv; c++) dot[d] += cs->gctx[c * cs->dkp + d] * cs->ctx[c * cs->dkp + d];
    }
    for (int64_t n = 0; n < cs->N; n++)
        for (int64_t d = 0; d < cs->dk; d++) rows[n * rs + d] = keys[n * ks + d] * (rows[n * rs + d] - dot[d]);
}

/* keys[n] = softmax over the N positions of k[n], per channel: max, exp and sum, scale. k rows
 * are vector-readable (row stride kst); keys rows are written with row stride ks. */
static void FN(softmax_rows)(const FN(cscratch_t) *cs, const REAL *k, int64_t kst, REAL *keys, int64_t ks) {
    typedef int64_t lvec __attribute__((vector_size(VLEN * sizeof(REAL))));
    for (int64_t x = 0; x < cs->dkp; x += VLEN) {
        VEC mx = *(const VEC *)(k + x), sum = {0};
        for (int64_t n = 1; n < cs->N; n++) {
            VEC r = *(const VEC *)(k + n * kst + x);
            lvec gt = (lvec)(r > mx);
            mx = (VEC)((gt & (lvec)r) | (~gt & (lvec)mx));
        }
        for (int64_t n = 0; n < cs->N; n++) {
            VEC e = FN(vexp)(*(const VEC *)(k + n * kst + x) - mx);
            *(VEC *)(keys + n * ks + x) = e;
            sum += e;
        }
        VEC inv = 1 / sum;
        for (int64_t n = 0; n < cs->N; n++) *(VEC *)(keys + n * ks + x) *= inv;
    }
}

static void *FN(content_forward_job)(void *arg) {
    FN(cjob_t) *jb = arg;
    FN(cscratch_t) cs;
    if (FN(cscratch_init)(&cs, jb->dims)) { jb->head.status = -1; return NULL; }
    for (int64_t t = jb->head.t0; t < jb->head.t1; t++) {
        const REAL *q = jb->q + FN(cbase)(jb->sq, t, jb->dims), *v = jb->v + FN(cbase)(jb->sv, t, jb->dims);
        int64_t ks, os;
        const REAL *keys = FN(vector_rows)(jb->k + FN(cbase)(jb->sk, t, jb->dims), jb->sk, cs.N, cs.dk, cs.k, &ks);
        if (jb->dims[C_SOFTMAX]) {  /* k given: keys = softmax_N(k), returned for the backward */
            int64_t kos;
            REAL *keys_out = jb->keys + FN(cbase)(jb->skeys, t, jb->dims);
            REAL *rows = FN(output_rows)(keys_out, jb->skeys, cs.dk, cs.oq, &kos);
            FN(softmax_rows)(&cs, keys, ks, rows, kos);
            FN(flush_rows)(keys_out, jb->skeys, rows, cs.N, cs.dk, 0);
            keys = rows;
            ks = kos;
        }
        FN(context)(&cs, v, jb->sv, keys, ks);
        REAL *out = jb->out + FN(cbase)(jb->sout, t, jb->dims);
        REAL *rows = FN(output_rows)(out, jb->sout, cs.dv, cs.ov, &os);
        FN(gemm_rows)(rows, os, q, jb->sq.s, jb->sq.c, cs.ctxt, 0, cs.dvp, cs.N, cs.dk, cs.dvp,
                      FN(in_place_acc)(rows, out, jb->dims[C_ACC1]));  /* out[n] = ctx q[n] */
        FN(flush_rows)(out, jb->sout, rows, cs.N, cs.dv, jb->dims[C_ACC1]);
    }
    free(cs.q);
    return NULL;
}

static void *FN(content_backward_job)(void *arg) {
    FN(cjob_t) *jb = arg;
    FN(cscratch_t) cs;
    if (FN(cscratch_init)(&cs, jb->dims)) { jb->head.status = -1; return NULL; }
    int64_t N = cs.N, dkp = cs.dkp, dvp = cs.dvp, qs, ks, gqs, gks, gvs;
    for (int64_t t = jb->head.t0; t < jb->head.t1; t++) {
        const REAL *k = jb->k + FN(cbase)(jb->sk, t, jb->dims), *v = jb->v + FN(cbase)(jb->sv, t, jb->dims);
        const REAL *g = jb->g + FN(cbase)(jb->sg, t, jb->dims);
        const REAL *qrows = FN(vector_rows)(jb->q + FN(cbase)(jb->sq, t, jb->dims), jb->sq, N, cs.dk, cs.q, &qs);
        const REAL *keys = FN(vector_rows)(k, jb->sk, N, cs.dk, cs.k, &ks);
        FN(context)(&cs, v, jb->sv, keys, ks);
        FN(gemm_rows)(cs.gctx, dkp, g, jb->sg.c, jb->sg.s, qrows, 0, qs, cs.dv, N, dkp, 0);  /* gctx[c] = sum_n g[n, c] q[n] */
        FN(transpose)(cs.gctxt, cs.gctx, &cs);
        REAL *gq = jb->gq + FN(cbase)(jb->sgq, t, jb->dims), *gk = jb->gk + FN(cbase)(jb->sgk, t, jb->dims);
        REAL *gv = jb->gv + FN(cbase)(jb->sgv, t, jb->dims);
        REAL *oq = FN(output_rows)(gq, jb->sgq, cs.dk, cs.oq, &gqs), *ok = FN(output_rows)(gk, jb->sgk, cs.dk, cs.ok, &gks);
        REAL *ov = FN(output_rows)(gv, jb->sgv, cs.dv, cs.ov, &gvs);
        const int64_t *acc = jb->dims + C_ACC1;
        FN(gemm_rows)(oq, gqs, g, jb->sg.s, jb->sg.c, cs.ctx, 0, dkp, N, cs.dv, dkp, FN(in_place_acc)(oq, gq, acc[0]));    /* gq[n] = ctx^T g[n] */
        FN(gemm_rows)(ok, gks, v, jb->sv.s, jb->sv.c, cs.gctx, 0, dkp, N, cs.dv, dkp, FN(in_place_acc)(ok, gk, acc[1]));   /* gk[n] = gctx^T v[n] */
        FN(gemm_rows)(ov, gvs, k, jb->sk.s, jb->sk.c, cs.gctxt, 0, dvp, N, cs.dk, dvp, FN(in_place_acc)(ov, gv, acc[2]));  /* gv[n] = gctx k[n] */
        if (jb->dims[C_SOFTMAX]) FN(softmax_grad)(&cs, ok, gks, keys, ks);
        FN(flush_rows)(gq, jb->sgq, oq, N, cs.dk, acc[0]);
        FN(flush_rows)(gk, jb->sgk, ok, N, cs.dk, acc[1]);
        FN(flush_rows)(gv, jb->sgv, ov, N, cs.dv, acc[2]);
    }
    free(cs.q);
    return NULL;
}

/* Tasks: B images of h heads, one job range each. */
static int FN(crun)(void *(*fn)(void *), const int64_t *dims, FN(cjob_t) proto) {
    FN(cjob_t) *jobs = malloc(sizeof(FN(cjob_t)) * 256);
    if (!jobs) return -1;
    int64_t n = split_jobs((char *)jobs, &proto, sizeof(FN(cjob_t)), dims[C_B] * dims[C_H], dims[C_THREADS]);
    int status = run_jobs(fn, (char *)jobs, sizeof(FN(cjob_t)), n);
    free(jobs);
    return status;
}

/* Strides: q, k (or keys), v, out, keys out (4 each: image, position, head, channel). With the
 * C_SOFTMAX flag, k is softmax-normalised here and the keys written to keys_out. Returns 0, or -1
 * out of memory. */
int FN(gsa_content_forward)(const int64_t *dims, const int64_t *strides, const REAL *q, const REAL *k,
                             const REAL *v, REAL *out, REAL *keys_out) {
    FN(cjob_t) proto = {.dims = dims, .q = q, .k = k, .v = v, .out = out, .keys = keys_out};
    strides_t *st[] = {&proto.sq, &proto.sk, &proto.sv, &proto.sout, &proto.skeys};
    for (int i = 0; i < 5; i++) *st[i] = (strides_t){strides[4 * i], strides[4 * i + 1], 0, strides[4 * i + 2], strides[4 * i + 3]};
    return FN(crun)(FN(content_forward_job), dims, proto);
}

/* Strides: q, keys, v, g, gq, gk, gv (4 each). */
int FN(gsa_content_backward)(const int64_t *dims, const int64_t *strides, const REAL *q, const REAL *k,
                              const REAL *v, const REAL *g, REAL *gq, REAL *gk, REAL *gv) {
    FN(cjob_t) proto = {.dims = dims, .q = q, .k = k, .v = v, .g = g, .gq = gq, .gk = gk, .gv = gv};
    strides_t *st[] = {&proto.sq, &proto.sk, &proto.sv, &proto.sg, &proto.sgq, &proto.sgk, &proto.sgv};
    for (int i = 0; i < 7; i++) *st[i] = (strides_t){strides[4 * i], strides[4 * i + 1], 0, strides[4 * i + 2], strides[4 * i + 3]};
    return FN(crun)(FN(content_backward_job), dims, proto);
}
