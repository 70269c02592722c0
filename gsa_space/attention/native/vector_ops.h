/* Vector helpers, included once per element type with REAL, VLEN and FN(name) defined. */

typedef REAL FN(vec) __attribute__((vector_size(VLEN * sizeof(REAL)), aligned(sizeof(REAL))));
#define VEC FN(vec)

/* exp of each lane. Float: Cody-Waite reduction to |r| <= ln2/2 and a degree-6 Taylor polynomial,
 * relative error < 2e-7, for inputs <= 0 (softmax after subtracting the max); below -87 it gives
 * exp(-87), and NaN stays NaN. Double: libm per lane (accuracy first; float32 is the fast path). */
static inline VEC FN(vexp)(VEC x) {
#if VLEN == 8
    typedef int32_t ivec __attribute__((vector_size(VLEN * sizeof(int32_t))));
    typedef uint32_t uvec __attribute__((vector_size(VLEN * sizeof(uint32_t))));
    ivec in_range = x >= -87.0f;  /* false for NaN too: no NaN reaches the float -> int conversion */
    VEC xc = (VEC)((in_range & (ivec)x) | (~in_range & (ivec)((VEC){0} - 87.0f)));
    VEC n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  /* round(x / ln2) */
    VEC r = xc - n * 0.693145751953125f - n * 1.428606765330187e-06f;
    VEC p = 1.0f + r * (1.0f + r * (0.5f + r * (1.0f / 6 + r * (1.0f / 24 + r * (1.0f / 120 + r * (1.0f / 720))))));
    uvec bits = (uvec)(__builtin_convertvector(n, ivec) + 127) << 23;
    VEC scale;
    memcpy(&scale, &bits, sizeof scale);
    ivec is_num = x == x;
    return (VEC)((is_num & (ivec)(p * scale)) | (~is_num & (ivec)x));
#else
    for (int i = 0; i < VLEN; i++) x[i] = exp(x[i]);
    return x;
#endif
}

/* One register tile: rows i0 .. i0+u of dst[.., 0 .. n*VLEN) (+)= sum_k s_i[k * sk] * r_i[k * rk + ..],
 * x_i = x + i * x_row. With r_row == 0 (`shared`), every row reads the same r, loaded once per k. */
static inline __attribute__((always_inline)) void FN(tile)(
    REAL *dst, int64_t d_row, const REAL *s, int64_t s_row, int64_t sk, const REAL *r, int64_t r_row,
    int64_t rk, int64_t count, int n, int u, int shared, int accumulate) {
    VEC acc[16];
    for (int a = 0; a < n * u; a++) acc[a] = (VEC){0};
    for (int64_t k = 0; k < count; k++) {
        VEC rv[4];
        if (shared)
            for (int b = 0; b < n; b++) {
                rv[b] = *(const VEC *)(r + k * rk + b * VLEN);
                KEEP_IN_REGISTER(rv[b]);
            }
        for (int w = 0; w < u; w++) {
            REAL x = s[w * s_row + k * sk];
            for (int b = 0; b < n; b++)
                acc[w * n + b] += x * (shared ? rv[b] : *(const VEC *)(r + w * r_row + k * rk + b * VLEN));
        }
    }
    for (int w = 0; w < u; w++)
        for (int b = 0; b < n; b++) {
            VEC *out = (VEC *)(dst + w * d_row + b * VLEN);
            *out = accumulate ? *out + acc[w * n + b] : acc[w * n + b];
        }
}

/* One row with n blocks as 8/n partial sums over k: independent chains hide the FMA latency. */
static inline __attribute__((always_inline)) void FN(row)(
    REAL *dst, const REAL *s, int64_t sk, const REAL *r, int64_t rk, int64_t count, int n, int accumulate) {
    const int u = 8 / n;
    VEC acc[8];
    for (int a = 0; a < 8; a++) acc[a] = (VEC){0};
    int64_t k = 0;
    for (; k + u <= count; k += u)
        for (int w = 0; w < u; w++)
            for (int b = 0; b < n; b++) acc[w * n + b] += s[(k + w) * sk] * *(const VEC *)(r + (k + w) * rk + b * VLEN);
    for (; k < count; k++)
        for (int b = 0; b < n; b++) acc[b] += s[k * sk] * *(const VEC *)(r + k * rk + b * VLEN);
    for (int w = 1; w < u; w++)
        for (int b = 0; b < n; b++) acc[b] += acc[w * n + b];
    for (int b = 0; b < n; b++) {
        VEC *out = (VEC *)(dst + b * VLEN);
        *out = accumulate ? *out + acc[b] : acc[b];
    }
}

/* With 32 vector registers (AVX-512VL) a tile holds 16 accumulators, else 8. */
#ifdef __AVX512VL__
#define WIDE_ROWS(u) (2 * (u))
#else
#define WIDE_ROWS(u) (u)
#endif

#define TILE_ROWS(n, u)                                                                              \
    do {                                                                                             \
        int64_t i = 0;                                                                               \
        for (; i + (u) <= rows; i += (u)) {                                                          \
            if (r_row == 0)                                                                          \
                FN(tile)(dst + i * d_row + x, d_row, s + i * s_row, s_row, sk, r + x, 0, rk, count,  \
                         n, u, 1, accumulate);                                                       \
            else                                                                                     \
                FN(tile)(dst + i * d_row + x, d_row, s + i * s_row, s_row, sk, r + i * r_row + x,    \
                         r_row, rk, count, n, u, 0, accumulate);                                     \
        }                                                                                            \
        for (; i < rows; i++)                                                                        \
            FN(row)(dst + i * d_row + x, s + i * s_row, sk, r + i * r_row + x, rk, count, n, accumulate); \
    } while (0)

/* For rows i < rows: dst_i[0 .. width) (+)= sum_{k < count} s_i[k * sk] * r_i[k * rk + 0 .. width),
 * x_i = x + i * x_row; width a multiple of VLEN. A batch of small row-times-matrix products in
 * register tiles of 8 vectors (4 blocks x 2 rows, 2 x 4 or 1 x 8). */
static void FN(gemm_rows)(REAL *dst, int64_t d_row, const REAL *s, int64_t s_row, int64_t sk,
                          const REAL *r, int64_t r_row, int64_t rk, int64_t rows, int64_t count,
                          int64_t width, int accumulate) {
    for (int64_t x = 0; x < width;) {
        if (width - x >= 4 * VLEN) { TILE_ROWS(4, WIDE_ROWS(2)); x += 4 * VLEN; }
        else if (width - x >= 2 * VLEN) { TILE_ROWS(2, WIDE_ROWS(4)); x += 2 * VLEN; }
        else { TILE_ROWS(1, 8); x += VLEN; }
    }
}

#undef TILE_ROWS

/* One row: dst[0 .. width) (+)= sum_{k < count} s[k * sk] * r[k * rk + 0 .. width). */
static void FN(combine)(REAL *dst, const REAL *s, int64_t sk, const REAL *r, int64_t rk,
                        int64_t count, int64_t width, int accumulate) {
    FN(gemm_rows)(dst, 0, s, 0, sk, r, 0, rk, 1, count, width, accumulate);
}

/* dst (S, cp) rows <- src[a * st.s + i * st.c], i < c; the padding stays zero. Unit channel
 * strides (the usual case) take a loop the compiler vectorises. */
static void FN(gather_rows)(REAL *dst, int64_t cp, const REAL *src, strides_t st, int64_t S, int64_t c) {
    if (st.c == 1) {
        for (int64_t a = 0; a < S; a++)
            for (int64_t i = 0; i < c; i++) dst[a * cp + i] = src[a * st.s + i];
        return;
    }
    if (st.s == 1) {  /* channel-major source (NCHW gradients): runs along positions */
        for (int64_t i = 0; i < c; i++)
            for (int64_t a = 0; a < S; a++) dst[a * cp + i] = src[i * st.c + a];
        return;
    }
    for (int64_t a = 0; a < S; a++)
        for (int64_t i = 0; i < c; i++) dst[a * cp + i] = src[a * st.s + i * st.c];
}

static void FN(scatter_rows)(REAL *dst, strides_t st, const REAL *src, int64_t cp, int64_t S, int64_t c) {
    if (st.c == 1) {
        for (int64_t a = 0; a < S; a++)
            for (int64_t i = 0; i < c; i++) dst[a * st.s + i] = src[a * cp + i];
        return;
    }
    if (st.s == 1) {  /* channel-major destination (NCHW outputs): runs along positions */
        for (int64_t i = 0; i < c; i++)
            for (int64_t a = 0; a < S; a++) dst[i * st.c + a] = src[a * cp + i];
        return;
    }
    for (int64_t a = 0; a < S; a++)
        for (int64_t i = 0; i < c; i++) dst[a * st.s + i * st.c] = src[a * cp + i];
}

/* Prefetch strided (S, c) rows (a line, a block of positions) along their contiguous runs: each
 * position's channels, or each channel's positions (channel-major maps). */
static inline __attribute__((always_inline)) void FN(prefetch_rows)(const REAL *p, strides_t st, int64_t S, int64_t c, int write) {
    if (st.c <= st.s)
        for (int64_t a = 0; a < S; a++) prefetch_span(p + a * st.s, (int64_t)sizeof(REAL) * ((c - 1) * st.c + 1), write);
    else
        for (int64_t i = 0; i < c; i++) prefetch_span(p + i * st.c, (int64_t)sizeof(REAL) * ((S - 1) * st.s + 1), write);
}

/* Rows of a strided (S, c) operand for vector reads: the source itself when its channels are
 * contiguous and fill whole vectors (no copy), else a zero-padded copy in `scratch`. */
static const REAL *FN(vector_rows)(const REAL *src, strides_t st, int64_t S, int64_t c, REAL *scratch, int64_t *rs) {
    if (st.c == 1 && c % VLEN == 0) { *rs = st.s; return src; }
    *rs = round_up(c, VLEN);
    FN(gather_rows)(scratch, *rs, src, st, S, c);
    return scratch;
}

/* Where to write (S, c) result rows: the destination itself when it can take whole vectors, else
 * `scratch`, which `flush_rows` then scatters (adding when `accumulate`). Products into the
 * destination itself add with `in_place_acc`. */
static REAL *FN(output_rows)(REAL *dst, strides_t st, int64_t c, REAL *scratch, int64_t *rs) {
    if (st.c == 1 && c % VLEN == 0) { *rs = st.s; return dst; }
    *rs = round_up(c, VLEN);
    return scratch;
}

static int FN(in_place_acc)(const REAL *rows, const REAL *dst, int64_t accumulate) {
    return rows == dst && accumulate;
}

static void FN(flush_rows)(REAL *dst, strides_t st, const REAL *rows, int64_t S, int64_t c, int64_t accumulate) {
    if (rows == dst) return;
    int64_t cp = round_up(c, VLEN);
    if (!accumulate) { FN(scatter_rows)(dst, st, rows, cp, S, c); return; }
    if (st.s == 1) {
        for (int64_t i = 0; i < c; i++)
            for (int64_t a = 0; a < S; a++) dst[i * st.c + a] += rows[a * cp + i];
        return;
    }
    for (int64_t a = 0; a < S; a++)
        for (int64_t i = 0; i < c; i++) dst[a * st.s + i * st.c] += rows[a * cp + i];
}
