#include "engine/kernels/qgemm_x16.hpp"

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <utility>
#include <vector>

#include "engine/kernels/cpu.hpp"
#include "engine/kernels/matmul_q4_0.hpp"
#include "engine/kernels/matmul_q8_0.hpp"

#if defined(__x86_64__)
#include <immintrin.h>
// GCC 12's avx512fintrin.h (_mm512_cvtph_ps, _mm512_cvtepi32_ps: `__m512 __Y = __Y;`).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace reprise::engine {

namespace {

constexpr int kQ8Chunks = 8, kQ4Chunks = 4;  // 64-byte chunks per group block
constexpr size_t kScaleBytes = 2 * kX16Rows;
constexpr int kAvx2Wide = 3;  // AVX2 Q4_0: 16-row tiles of this many tokens from this many on

size_t chunk_count(GgmlType t) { return t == GgmlType::Q8_0 ? kQ8Chunks : kQ4Chunks; }
int groups_of(int rows) { return (rows + kX16Rows - 1) / kX16Rows; }

inline uint32_t load_u32(const void* p) {
    uint32_t v;
    std::memcpy(&v, p, 4);
    return v;
}

// Activations prepared once per call, shared by all threads: block scales as float and,
// per (token, block), -offset * (sum of its 32 quants), the start value of the integer
// dot that turns the unsigned weights (q + offset) back into signed ones exactly.
struct Act {
    const BlockQ8_0* q;
    const float* d;
    const int32_t* corr;
    int nb;
};
struct ActBuffers {
    std::vector<float> d;
    std::vector<int32_t> corr;
};
Act prepare(const BlockQ8_0* Xq, int n_tok, int nb, int offset, ActBuffers& buf) {
    const size_t n = size_t(n_tok) * size_t(nb);
    buf.d.resize(n);
    buf.corr.resize(n);
    for (size_t k = 0; k < n; ++k) {
        buf.d[k] = fp16_to_fp32(Xq[k].d);
        int s = 0;
        for (int i = 0; i < kQK8_0; ++i) s += Xq[k].qs[i];
        buf.corr[k] = -offset * s;
    }
    return Act{Xq, buf.d.data(), buf.corr.data(), nb};
}

#if defined(__x86_64__)
#define REPRISE_X16_AVX2 __attribute__((target("avx2,fma,f16c")))
#define REPRISE_X16_VNNI __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))

// 16 rows x NT tokens. Weights as unsigned bytes: Q8_0 q + 128, Q4_0 its nibbles (q + 8);
// the start value Act::corr takes the offset back out. The 8 vpdpbusd of a block run as
// two chains (chunks 0-3, 4-7) so that one token alone (decode) is not latency bound.
template <bool kQ4, int NT>
REPRISE_X16_VNNI void tile_vnni(const uint8_t* G, size_t gbb, const Act& A, int t0, float* Y, int64_t ldy, int nrows) {
    __m512 acc[NT];
    _Pragma("GCC unroll 8") for (int j = 0; j < NT; ++j) acc[j] = _mm512_setzero_ps();
    const __m512i flip = _mm512_set1_epi8(char(0x80)), low = _mm512_set1_epi8(0x0F);
    for (int b = 0; b < A.nb; ++b) {
        const uint8_t* g = G + size_t(b) * gbb;
        const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(g)));
        __m512i w[8];
        if constexpr (kQ4) {
            _Pragma("GCC unroll 8") for (int k = 0; k < 4; ++k) {
                const __m512i v = _mm512_loadu_si512(g + kScaleBytes + 64 * k);
                w[k] = _mm512_and_si512(v, low);
                w[k + 4] = _mm512_and_si512(_mm512_srli_epi16(v, 4), low);
            }
        } else {
            _Pragma("GCC unroll 8") for (int k = 0; k < 8; ++k) w[k] = _mm512_xor_si512(_mm512_loadu_si512(g + kScaleBytes + 64 * k), flip);
        }
        _Pragma("GCC unroll 8") for (int j = 0; j < NT; ++j) {
            const size_t kk = size_t(t0 + j) * size_t(A.nb) + size_t(b);
            const int8_t* y = A.q[kk].qs;
            __m512i s0 = _mm512_set1_epi32(A.corr[kk]), s1 = _mm512_setzero_si512();
            _Pragma("GCC unroll 8") for (int k = 0; k < 4; ++k) {
                s0 = _mm512_dpbusd_epi32(s0, w[k], _mm512_set1_epi32(int(load_u32(y + 4 * k))));
                s1 = _mm512_dpbusd_epi32(s1, w[k + 4], _mm512_set1_epi32(int(load_u32(y + 16 + 4 * k))));
            }
            const __m512 scale = _mm512_mul_ps(dw, _mm512_set1_ps(A.d[kk]));
            acc[j] = _mm512_add_ps(acc[j], _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(s0, s1)), scale));
        }
    }
    const __mmask16 m = nrows >= kX16Rows ? __mmask16(0xFFFF) : __mmask16((1u << nrows) - 1);
    _Pragma("GCC unroll 8") for (int j = 0; j < NT; ++j) _mm512_mask_storeu_ps(Y + int64_t(t0 + j) * ldy, m, acc[j]);
}

// Keeps v in a register at this point: stops GCC from re-associating the integer sums
// of a tile into trees whose partial products spill out of the 16 ymm registers.
template <class V>
inline void pin(V& v) {
    __asm__("" : "+x"(v));
}

// 8 rows (half h of the group) x NT tokens with maddubs. Q8_0: |w| times y * sign(w)
// (pairs at most 2 * 127 * 127, no saturation). Q4_0: nibbles times y, the 16-bit pair
// sums of a whole block added before widening: at most 8 * 2 * 15 * 127 = 30480.
template <bool kQ4, int NT>
REPRISE_X16_AVX2 void tile_avx2(const uint8_t* G, size_t gbb, const Act& A, int t0, float* Y, int64_t ldy, int h, int nrows) {
    __m256 acc[NT];
    _Pragma("GCC unroll 8") for (int j = 0; j < NT; ++j) acc[j] = _mm256_setzero_ps();
    const __m256i ones = _mm256_set1_epi16(1), low = _mm256_set1_epi8(0x0F);
    for (int b = 0; b < A.nb; ++b) {
        const uint8_t* g = G + size_t(b) * gbb;
        const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g + 16 * h)));
        const int8_t* y[NT];
        _Pragma("GCC unroll 8") for (int j = 0; j < NT; ++j) y[j] = A.q[size_t(t0 + j) * size_t(A.nb) + size_t(b)].qs;
        __m256i s[NT];
        if constexpr (kQ4) {
            _Pragma("GCC unroll 8") for (int j = 0; j < NT; ++j) s[j] = _mm256_setzero_si256();
            _Pragma("GCC unroll 8") for (int k = 0; k < 4; ++k) {
                const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(g + kScaleBytes + 64 * k + 32 * h));
                const __m256i lo = _mm256_and_si256(v, low), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
                _Pragma("GCC unroll 8") for (int j = 0; j < NT; ++j) {
                    const __m256i a = _mm256_maddubs_epi16(lo, _mm256_set1_epi32(int(load_u32(y[j] + 4 * k))));
                    const __m256i c = _mm256_maddubs_epi16(hi, _mm256_set1_epi32(int(load_u32(y[j] + 16 + 4 * k))));
                    s[j] = _mm256_add_epi16(s[j], _mm256_add_epi16(a, c));
                    pin(s[j]);
                }
            }
            _Pragma("GCC unroll 8") for (int j = 0; j < NT; ++j) {
                const size_t kk = size_t(t0 + j) * size_t(A.nb) + size_t(b);
                s[j] = _mm256_add_epi32(_mm256_madd_epi16(s[j], ones), _mm256_set1_epi32(A.corr[kk]));
            }
        } else {
            _Pragma("GCC unroll 8") for (int j = 0; j < NT; ++j) s[j] = _mm256_setzero_si256();
            _Pragma("GCC unroll 8") for (int k = 0; k < 8; ++k) {
                const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(g + kScaleBytes + 64 * k + 32 * h));
                const __m256i aw = _mm256_sign_epi8(w, w);
                _Pragma("GCC unroll 8") for (int j = 0; j < NT; ++j) {
                    const __m256i sy = _mm256_sign_epi8(_mm256_set1_epi32(int(load_u32(y[j] + 4 * k))), w);
                    s[j] = _mm256_add_epi32(s[j], _mm256_madd_epi16(_mm256_maddubs_epi16(aw, sy), ones));
                    pin(s[j]);
                }
            }
        }
        _Pragma("GCC unroll 8") for (int j = 0; j < NT; ++j) {
            const size_t kk = size_t(t0 + j) * size_t(A.nb) + size_t(b);
            const __m256 scale = _mm256_mul_ps(dw, _mm256_set1_ps(A.d[kk]));
            acc[j] = _mm256_add_ps(acc[j], _mm256_mul_ps(_mm256_cvtepi32_ps(s[j]), scale));
        }
    }
    _Pragma("GCC unroll 8") for (int j = 0; j < NT; ++j) {
        float* out = Y + int64_t(t0 + j) * ldy + 8 * h;
        if (nrows >= 8) {
            _mm256_storeu_ps(out, acc[j]);
        } else {
            alignas(32) float tmp[8];
            _mm256_store_ps(tmp, acc[j]);
            std::memcpy(out, tmp, sizeof(float) * size_t(nrows));
        }
    }
}

// Q4_0, all 16 rows of the group x NT tokens: tile_avx2's work for both halves at once,
// so each activation broadcast serves 16 rows (10 instead of 12 vector operations per
// chunk and token). Prefill, 2048 x 768 x 128, 1 thread: 126 GMAC/s against 120 for two
// 8-row tiles of 4 tokens (the same for Q8_0's sign trick, so Q8_0 keeps tile_avx2).
template <int NT>
REPRISE_X16_AVX2 void tile_q4_avx2_16(const uint8_t* G, size_t gbb, const Act& A, int t0, float* Y, int64_t ldy, int nrows) {
    __m256 acc[2][NT];
    _Pragma("GCC unroll 8") for (int j = 0; j < NT; ++j) acc[0][j] = _mm256_setzero_ps(), acc[1][j] = _mm256_setzero_ps();
    const __m256i ones = _mm256_set1_epi16(1), low = _mm256_set1_epi8(0x0F);
    for (int b = 0; b < A.nb; ++b) {
        const uint8_t* g = G + size_t(b) * gbb;
        const int8_t* y[NT];
        _Pragma("GCC unroll 8") for (int j = 0; j < NT; ++j) y[j] = A.q[size_t(t0 + j) * size_t(A.nb) + size_t(b)].qs;
        __m256i s[2][NT];
        _Pragma("GCC unroll 8") for (int j = 0; j < NT; ++j) s[0][j] = _mm256_setzero_si256(), s[1][j] = _mm256_setzero_si256();
        {
            _Pragma("GCC unroll 8") for (int k = 0; k < 4; ++k) {
                const __m256i v0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(g + kScaleBytes + 64 * k));
                const __m256i v1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(g + kScaleBytes + 64 * k + 32));
                const __m256i lo0 = _mm256_and_si256(v0, low), hi0 = _mm256_and_si256(_mm256_srli_epi16(v0, 4), low);
                const __m256i lo1 = _mm256_and_si256(v1, low), hi1 = _mm256_and_si256(_mm256_srli_epi16(v1, 4), low);
                _Pragma("GCC unroll 8") for (int j = 0; j < NT; ++j) {
                    const __m256i ya = _mm256_set1_epi32(int(load_u32(y[j] + 4 * k)));
                    const __m256i yc = _mm256_set1_epi32(int(load_u32(y[j] + 16 + 4 * k)));
                    s[0][j] = _mm256_add_epi16(s[0][j], _mm256_add_epi16(_mm256_maddubs_epi16(lo0, ya), _mm256_maddubs_epi16(hi0, yc)));
                    pin(s[0][j]);
                    s[1][j] = _mm256_add_epi16(s[1][j], _mm256_add_epi16(_mm256_maddubs_epi16(lo1, ya), _mm256_maddubs_epi16(hi1, yc)));
                    pin(s[1][j]);
                }
            }
            _Pragma("GCC unroll 8") for (int j = 0; j < NT; ++j) {
                const size_t kk = size_t(t0 + j) * size_t(A.nb) + size_t(b);
                const __m256i c = _mm256_set1_epi32(A.corr[kk]);
                s[0][j] = _mm256_add_epi32(_mm256_madd_epi16(s[0][j], ones), c);
                s[1][j] = _mm256_add_epi32(_mm256_madd_epi16(s[1][j], ones), c);
            }
        }
        const __m256 dw0 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g)));
        const __m256 dw1 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g + 16)));
        _Pragma("GCC unroll 8") for (int j = 0; j < NT; ++j) {
            const size_t kk = size_t(t0 + j) * size_t(A.nb) + size_t(b);
            const __m256 dx = _mm256_set1_ps(A.d[kk]);
            acc[0][j] = _mm256_add_ps(acc[0][j], _mm256_mul_ps(_mm256_cvtepi32_ps(s[0][j]), _mm256_mul_ps(dw0, dx)));
            acc[1][j] = _mm256_add_ps(acc[1][j], _mm256_mul_ps(_mm256_cvtepi32_ps(s[1][j]), _mm256_mul_ps(dw1, dx)));
        }
    }
    _Pragma("GCC unroll 8") for (int j = 0; j < NT; ++j) {
        float* out = Y + int64_t(t0 + j) * ldy;
        if (nrows >= 16) {
            _mm256_storeu_ps(out, acc[0][j]);
            _mm256_storeu_ps(out + 8, acc[1][j]);
        } else {
            alignas(32) float tmp[16];
            _mm256_store_ps(tmp, acc[0][j]);
            _mm256_store_ps(tmp + 8, acc[1][j]);
            std::memcpy(out, tmp, sizeof(float) * size_t(nrows));
        }
    }
}

// All tokens of one 16-row group: tiles of kNT tokens, then one narrower tile.
template <int kNT, class Tile>
void group_tokens(int n_tok, Tile&& tile) {
    int t = 0;
    for (; t + kNT <= n_tok; t += kNT) tile(std::integral_constant<int, kNT>{}, t);
    const int rest = n_tok - t;
    if (rest <= 0) return;
    [&]<int... I>(std::integer_sequence<int, I...>) {
        ((rest == I + 1 ? (tile(std::integral_constant<int, I + 1>{}, t), 0) : 0), ...);
    }(std::make_integer_sequence<int, kNT - 1>{});
}

template <bool kQ4>
void run_vnni(const uint8_t* P, size_t gbb, int rows, const Act& A, int n_tok, float* Y, int64_t g0, int64_t g1) {
    for (int64_t g = g0; g < g1; ++g) {
        const uint8_t* G = P + size_t(g) * size_t(A.nb) * gbb;
        const int nrows = std::min<int>(kX16Rows, rows - int(g) * kX16Rows);
        float* Yg = Y + g * kX16Rows;
        group_tokens<8>(n_tok, [&](auto nt, int t) { tile_vnni<kQ4, decltype(nt)::value>(G, gbb, A, t, Yg, rows, nrows); });
    }
}

template <bool kQ4>
void run_avx2(const uint8_t* P, size_t gbb, int rows, const Act& A, int n_tok, float* Y, int64_t g0, int64_t g1) {
    for (int64_t g = g0; g < g1; ++g) {
        const uint8_t* G = P + size_t(g) * size_t(A.nb) * gbb;
        const int nrows = std::min<int>(kX16Rows, rows - int(g) * kX16Rows);
        float* Yg = Y + g * kX16Rows;
        if (kQ4 && n_tok >= kAvx2Wide) {
            group_tokens<kAvx2Wide>(n_tok, [&](auto nt, int t) { tile_q4_avx2_16<decltype(nt)::value>(G, gbb, A, t, Yg, rows, nrows); });
            continue;
        }
        for (int h = 0; h < 2 && 8 * h < nrows; ++h)
            group_tokens<4>(n_tok, [&](auto nt, int t) {
                tile_avx2<kQ4, decltype(nt)::value>(G, gbb, A, t, Yg, rows, h, std::min(8, nrows - 8 * h));
            });
    }
}
#endif

// The scalar path: each row unpacked, then the reference dot per token.
void run_scalar(GgmlType t, const uint8_t* P, int rows, int cols, const BlockQ8_0* Xq, int n_tok, float* Y, int64_t g0,
                int64_t g1) {
    const int nb = cols / kQK8_0;
    std::vector<uint8_t> row(size_t(nb) * std::max(sizeof(BlockQ8_0), sizeof(BlockQ4_0)));
    for (int64_t r = g0 * kX16Rows; r < std::min<int64_t>(rows, g1 * kX16Rows); ++r) {
        x16_unpack_row(t, P, cols, int(r), row.data());
        for (int tk = 0; tk < n_tok; ++tk) {
            const BlockQ8_0* x = Xq + int64_t(tk) * nb;
            Y[int64_t(tk) * rows + r] = t == GgmlType::Q8_0 ? vec_dot_q8_0_q8_0_ref(cols, reinterpret_cast<const BlockQ8_0*>(row.data()), x)
                                                             : vec_dot_q4_0_q8_0_ref(cols, reinterpret_cast<const BlockQ4_0*>(row.data()), x);
        }
    }
}

}  // namespace

bool x16_supports(GgmlType t) { return t == GgmlType::Q8_0 || t == GgmlType::Q4_0; }

size_t x16_group_block_bytes(GgmlType t) { return kScaleBytes + 64 * chunk_count(t); }

size_t x16_bytes(GgmlType t, int rows, int cols) {
    return size_t(groups_of(rows)) * size_t(cols / kQK8_0) * x16_group_block_bytes(t);
}

void x16_pack(GgmlType t, const void* W, int rows, int cols, uint8_t* out) {
    const int nb = cols / kQK8_0;
    const size_t gbb = x16_group_block_bytes(t);
    std::memset(out, 0, x16_bytes(t, rows, cols));  // padding rows: scale 0, quants 0
    for (int r = 0; r < rows; ++r) {
        const int j = r % kX16Rows;
        for (int b = 0; b < nb; ++b) {
            uint8_t* dst = out + (size_t(r / kX16Rows) * size_t(nb) + size_t(b)) * gbb;
            const size_t i = size_t(r) * size_t(nb) + size_t(b);
            const uint16_t* d;
            const void* qs;
            if (t == GgmlType::Q8_0) d = &static_cast<const BlockQ8_0*>(W)[i].d, qs = static_cast<const BlockQ8_0*>(W)[i].qs;
            else d = &static_cast<const BlockQ4_0*>(W)[i].d, qs = static_cast<const BlockQ4_0*>(W)[i].qs;
            std::memcpy(dst + 2 * j, d, 2);
            for (size_t k = 0; k < chunk_count(t); ++k) std::memcpy(dst + kScaleBytes + 64 * k + 4 * j, static_cast<const uint8_t*>(qs) + 4 * k, 4);
        }
    }
}

void x16_unpack_row(GgmlType t, const uint8_t* packed, int cols, int row, void* blocks) {
    const int nb = cols / kQK8_0, j = row % kX16Rows;
    const size_t gbb = x16_group_block_bytes(t);
    for (int b = 0; b < nb; ++b) {
        const uint8_t* src = packed + (size_t(row / kX16Rows) * size_t(nb) + size_t(b)) * gbb;
        uint16_t* d;
        uint8_t* qs;
        if (t == GgmlType::Q8_0) {
            BlockQ8_0& o = static_cast<BlockQ8_0*>(blocks)[b];
            d = &o.d, qs = reinterpret_cast<uint8_t*>(o.qs);
        } else {
            BlockQ4_0& o = static_cast<BlockQ4_0*>(blocks)[b];
            d = &o.d, qs = o.qs;
        }
        std::memcpy(d, src + 2 * j, 2);
        for (size_t k = 0; k < chunk_count(t); ++k) std::memcpy(qs + 4 * k, src + kScaleBytes + 64 * k + 4 * j, 4);
    }
}

void x16_matmul(GgmlType t, const uint8_t* P, int rows, int cols, const BlockQ8_0* Xq, int n_tok, float* Y, ThreadPool* pool) {
    const X16Product p{P, rows, Y};
    x16_matmul_many(t, &p, 1, cols, Xq, n_tok, pool);
}

void x16_matmul_many(GgmlType t, const X16Product* products, int n_products, int cols, const BlockQ8_0* Xq, int n_tok,
                     ThreadPool* pool) {
    if (n_products <= 0 || n_tok <= 0) return;
    const int nb = cols / kQK8_0;
    const size_t gbb = x16_group_block_bytes(t);
    const bool q4 = t == GgmlType::Q4_0;
    const KernelIsa isa = kernels_isa();
    thread_local ActBuffers buf;
    // Offsets: VNNI multiplies unsigned weights (Q8_0 + 128, Q4_0 nibbles = q + 8), AVX2
    // Q4_0 too; AVX2 Q8_0 multiplies signed ones (sign trick).
    const int offset = q4 ? 8 : (isa == KernelIsa::Avx512Vnni ? 128 : 0);
    const Act A = isa == KernelIsa::Scalar ? Act{} : prepare(Xq, n_tok, nb, offset, buf);
    // The row groups of all products, one after the other, split over the threads.
    int64_t total = 0;
    for (int i = 0; i < n_products; ++i) total += groups_of(products[i].rows);
    parallel_for(pool, total, [&](int64_t g0, int64_t g1) {
        int64_t first = 0;  // global index of product i's group 0
        for (int i = 0; i < n_products && first < g1; first += groups_of(products[i].rows), ++i) {
            const X16Product& p = products[i];
            const int64_t b = std::max<int64_t>(g0 - first, 0), e = std::min<int64_t>(g1 - first, groups_of(p.rows));
            if (b >= e) continue;
#if defined(__x86_64__)
            if (isa == KernelIsa::Avx512Vnni) {
                q4 ? run_vnni<true>(p.packed, gbb, p.rows, A, n_tok, p.Y, b, e) : run_vnni<false>(p.packed, gbb, p.rows, A, n_tok, p.Y, b, e);
                continue;
            }
            if (isa == KernelIsa::Avx2) {
                q4 ? run_avx2<true>(p.packed, gbb, p.rows, A, n_tok, p.Y, b, e) : run_avx2<false>(p.packed, gbb, p.rows, A, n_tok, p.Y, b, e);
                continue;
            }
#endif
            run_scalar(t, p.packed, p.rows, cols, Xq, n_tok, p.Y, b, e);
        }
    });
}

}  // namespace reprise::engine
