// The kernels of log_overlap.cpp, included once per instruction set (inside a namespace,
// under that set's target pragma). Inputs come padded to a multiple of TILE rows.

template <typename R> struct Simd {
  typedef R vec __attribute__((vector_size(VEC_BYTES)));
  static constexpr int64_t L = VEC_BYTES / sizeof(R);  // lanes
  static constexpr int64_t G = TILE / L;               // vectors per tile row
  static vec load(const R *p) { vec v; std::memcpy(&v, p, sizeof v); return v; }
  static void store(R *p, vec v) { std::memcpy(p, &v, sizeof v); }
  static vec all(R x) { return vec{} + x; }
};

// a_ij of the tile (rows bi.., columns bj..), into a[i, j] and a[j, i] ([mp, mp]). The rows'
// values are read one at a time from row-major [mp, d] arrays, the columns' TILE at a time,
// in vectors, from transposed [d, mp] ones (muT, ...): one accumulator per column, no
// reduction across lanes. Sum_k log s_ijk = sum_k max(log var_ik, log var_jk) + log prod_k
// s_ijk min(1/var_ik, 1/var_jk), whose factors lie in [1, 2]: one log per PRODUCT_DIMS
// dimensions instead of one per dimension.
template <typename R>
void overlap_tile(const R *mu, const R *var, const R *logvar, const R *prec, const R *muT,
                  const R *varT, const R *logvarT, const R *precT, int64_t mp, int64_t d,
                  int64_t bi, int64_t bj, R *a) {
  using S = Simd<R>;
  using vec = typename S::vec;
  constexpr int64_t L = S::L, G = S::G;
  R block[TILE][TILE];
  for (int64_t r = 0; r < TILE; r++) {
    const int64_t i = bi + r;
    vec quad[G], prod[G], logs[G];
    for (int64_t g = 0; g < G; g++) {
      quad[g] = logs[g] = S::all(0);
      prod[g] = S::all(1);
    }
    for (int64_t k = 0; k < d; k++) {
      const vec mi = S::all(mu[i * d + k]), vi = S::all(var[i * d + k]),
                li = S::all(logvar[i * d + k]), pi = S::all(prec[i * d + k]);
      const int64_t at = k * mp + bj;
#pragma GCC unroll 8
      for (int64_t g = 0; g < G; g++) {
        const vec vj = S::load(varT + at + g * L), mj = S::load(muT + at + g * L),
                  lj = S::load(logvarT + at + g * L), pj = S::load(precT + at + g * L);
        const vec s = vi + vj, diff = mi - mj;
        quad[g] += diff * diff / s + (li > lj ? li : lj);
        prod[g] *= s * (pi < pj ? pi : pj);
      }
      if ((k + 1) % PRODUCT_DIMS == 0 || k == d - 1)
        for (int64_t g = 0; g < G; g++) {
          for (int64_t lane = 0; lane < L; lane++) logs[g][lane] += std::log(prod[g][lane]);
          prod[g] = S::all(1);
        }
    }
    for (int64_t g = 0; g < G; g++) S::store(block[r] + g * L, R(-0.5) * (quad[g] + logs[g]));
  }
  for (int64_t r = 0; r < TILE; r++)
    std::memcpy(a + (bi + r) * mp + bj, block[r], sizeof block[r]);
  if (bi != bj)
    for (int64_t c = 0; c < TILE; c++)
      for (int64_t r = 0; r < TILE; r++) a[(bj + c) * mp + bi + r] = block[r][c];
}

// Adds the tile's shares to the gradient sums gmu, gvar [mp, dp] (row-major; dp, like mu's
// and var's, a multiple of the lanes): for each pair i < j < m with p_ij + p_ji > negligible
// (p: [m, m]), c = scale (p_ij + p_ji), s = var_i + var_j and t = (mu_i - mu_j) / s, -c t to
// mu_i's and +c t to mu_j's, c (t^2 - 1/s) to both var's (halved by the caller); ROWS rows
// against one column at a time, vectorised over the dimensions, so each column's sums are
// read and written once per ROWS rows, and a column none of whose ROWS pairs counts skipped.
template <typename R>
void grad_tile(const R *mu, const R *var, const R *p, R scale, R negligible, int64_t m,
               int64_t dp, int64_t bi, int64_t bj, R *gmu, R *gvar) {
  using S = Simd<R>;
  using vec = typename S::vec;
  const int64_t j_end = bj + TILE < m ? bj + TILE : m;
  for (int64_t i0 = bi; i0 < bi + TILE && i0 < m; i0 += ROWS) {
    for (int64_t k = 0; k < dp; k += S::L) {
      vec mi[ROWS], vi[ROWS], row_mu[ROWS], row_var[ROWS];
      for (int64_t r = 0; r < ROWS; r++) {
        mi[r] = S::load(mu + (i0 + r) * dp + k);
        vi[r] = S::load(var + (i0 + r) * dp + k);
        row_mu[r] = row_var[r] = S::all(0);
      }
      for (int64_t j = bj; j < j_end; j++) {
        R c[ROWS];
        bool any = false;
        for (int64_t r = 0; r < ROWS; r++) {
          const int64_t i = i0 + r;
          const R weights = j > i && i < m ? p[i * m + j] + p[j * m + i] : R(0);
          c[r] = weights > negligible ? scale * weights : R(0);
          any |= c[r] != 0;
        }
        if (!any) continue;
        const vec mj = S::load(mu + j * dp + k), vj = S::load(var + j * dp + k);
        vec col_mu = S::load(gmu + j * dp + k), col_var = S::load(gvar + j * dp + k);
#pragma GCC unroll 4
        for (int64_t r = 0; r < ROWS; r++) {
          const vec inv = 1 / (vi[r] + vj), t = (mi[r] - mj) * inv;
          // c t^2 as (c t) t: t^2 alone may overflow where c = 0
          const vec ct = c[r] * t, w = ct * t - c[r] * inv;
          row_mu[r] += ct;
          row_var[r] += w;
          col_mu += ct;
          col_var += w;
        }
        S::store(gmu + j * dp + k, col_mu);
        S::store(gvar + j * dp + k, col_var);
      }
      for (int64_t r = 0; r < ROWS; r++) {
        S::store(gmu + (i0 + r) * dp + k, S::load(gmu + (i0 + r) * dp + k) - row_mu[r]);
        S::store(gvar + (i0 + r) * dp + k, S::load(gvar + (i0 + r) * dp + k) + row_var[r]);
      }
    }
  }
}

// The tiles of the upper triangle, each pair of tiles once, over `threads` threads.
template <typename R>
void log_overlap(const R *mu, const R *var, const R *logvar, const R *prec, const R *muT,
                 const R *varT, const R *logvarT, const R *precT, int64_t mp, int64_t d, R *a,
                 int threads) {
  const int64_t tiles = mp / TILE, pairs = tiles * (tiles + 1) / 2;
#pragma omp parallel num_threads(threads)
  {
    const FlushDenormals flushed;
#pragma omp for schedule(dynamic, 1)
    for (int64_t pair = 0; pair < pairs; pair++) {
      int64_t bi, bj;
      tile_pair(pair, tiles, &bi, &bj);
      overlap_tile(mu, var, logvar, prec, muT, varT, logvarT, precT, mp, d, bi, bj, a);
    }
  }
}

// Thread t adds into out[t] = (gmu, gvar), each [mp, dp]; the tiles go to the threads in a
// fixed order (schedule static), so the sums are the same bits for the same thread count.
template <typename R>
void log_overlap_grad(const R *mu, const R *var, const R *p, R scale, R negligible, int64_t m,
                      int64_t mp, int64_t dp, R *out, int threads) {
  const int64_t tiles = mp / TILE, pairs = tiles * (tiles + 1) / 2, size = mp * dp;
#pragma omp parallel num_threads(threads)
  {
    const FlushDenormals flushed;
    R *own = out + 2 * size * omp_get_thread_num();
#pragma omp for schedule(static, 1)
    for (int64_t pair = 0; pair < pairs; pair++) {
      int64_t bi, bj;
      tile_pair(pair, tiles, &bi, &bj);
      grad_tile(mu, var, p, scale, negligible, m, dp, bi, bj, own, own + size);
    }
  }
}
