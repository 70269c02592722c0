/* One line of the axial step: its logits, their application to v and the backward's products,
 * included by axial_step_body.h (once per element type). A line's matrices live in the line_t
 * scratch: lg (S x S logits), dlg (their gradient), both with zero-padded margins. */

#ifdef __AVX512VL__     /* dense_logits' register tile: rows x vectors accumulators */
#define SKEW_ROWS 4
#define SKEW_VECS 5
#else
#define SKEW_ROWS 2
#define SKEW_VECS 4
#endif

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

/* Rows a .. a+u-1 of a dense line's logits: their S + u - 1 columns in chunks of SKEW_VECS
 * vectors (u and each chunk's width constant at every tile, so the tiles stay in registers). */
static inline __attribute__((always_inline)) void FN(skew_rows)(FN(line_t) *ln, const REAL *rt, int64_t a, int u) {
    for (int64_t x0 = 0, cols = round_up(ln->S + u - 1, VLEN); x0 < cols; x0 += SKEW_VECS * VLEN) {
        if (cols - x0 >= SKEW_VECS * VLEN) FN(skew_tile)(ln, rt, a, x0, SKEW_VECS, u);
        else for (int n = 1; n < SKEW_VECS; n++) if ((cols - x0) == n * VLEN) FN(skew_tile)(ln, rt, a, x0, n, u);
    }
}

/* A dense line's logits: tiles of SKEW_ROWS rows, single rows for the rest. */
static void FN(dense_logits)(FN(line_t) *ln, const REAL *rt) {
    int64_t a = 0;
    for (; a + SKEW_ROWS <= ln->S; a += SKEW_ROWS) FN(skew_rows)(ln, rt, a, SKEW_ROWS);
    for (; a < ln->S; a++) FN(skew_rows)(ln, rt, a, 1);
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
