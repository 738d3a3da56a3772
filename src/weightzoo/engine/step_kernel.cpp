// One training step of a stack of MLPs, compiled: forward, loss, backward and Adam, model by model.
//
// Why: on the CPU the PyTorch step is ~100 small operations, each a pass over memory and a dispatch;
// at the engine's shapes (rows 128, widths 25-64) most of a step is overhead. Here one call runs the
// whole step of every model of a stack, each model's working set staying in the core's caches, with
// the products written as register-blocked outer products on 64-byte vectors (GCC's vector
// extensions: AVX-512 where the CPU has it, two AVX2 halves otherwise).
//
// What it guarantees (the engine's rules, engine/__init__.py): a model's arithmetic reads only its
// own rows, so its bits never depend on which models share its stack; nothing is split across
// threads, so they never depend on the thread count; the order of every sum is fixed by this file.
// Denormals are flushed inside the call (and the caller's state restored), so the bits do not depend
// on the calling thread's floating-point mode either.
//
// The math is mlp.py's and adam.py's: per-model mean BCE over the rows its mask keeps, the gradient
// by backpropagation, Adam (PyTorch's formula) at the model's own learning rate. Built by
// step_kernel.py with the machine's compiler; see there.

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>
#if defined(__SSE__)
#include <xmmintrin.h>
#endif

namespace {

template <class T> struct Vec;
template <> struct Vec<float> {
    typedef float type __attribute__((vector_size(64)));
    typedef int32_t itype __attribute__((vector_size(64)));
    static constexpr int lanes = 16;
};
template <> struct Vec<double> {
    typedef double type __attribute__((vector_size(64)));
    typedef int64_t itype __attribute__((vector_size(64)));
    static constexpr int lanes = 8;
};

template <class T> static inline typename Vec<T>::type load(const T* p) {
    typename Vec<T>::type v;
    std::memcpy(&v, p, sizeof(v));
    return v;
}
template <class T> static inline void store(T* p, typename Vec<T>::type v) { std::memcpy(p, &v, sizeof(v)); }
template <class T> static inline typename Vec<T>::type splat(T s) {
    typename Vec<T>::type v = {};
    return v + s;
}

enum Activation { RELU = 0, GELU = 1, TANH = 2, SIGMOID = 3, LEAKY_RELU = 4 };

struct StepArgs {
    int64_t models, depth, in_dim, width, rows, activation, params;  // params: P, a model's flat size
    int64_t x_stride, y_stride, mask_stride;  // from one model's rows to the next's
    void* flat;                                                    // [models, P]
    void* m;                                                       // Adam's first moments [models, P]
    void* v;                                                       // second moments [models, P]
    void* t;                                                       // step counts [models]
    const void* lr;                                                // [models]
    const uint8_t* stepping;                                       // [models]: 1 = this model steps
    const int64_t* widths;                                         // [models]: each model's own units
    const void* x;                                                 // [models][rows, in_dim]
    const void* y;                                                 // [models][rows]
    const void* mask;                                              // [models][rows]: 1 = a real row
    const void* keep;                                              // null, or [depth, models, rows, width]
    void* loss;                                                    // out [models]: summed BCE over real rows
    double beta1, beta2, eps, leaky_slope;
};

// C[i, 0:NV*lanes] = init (or 0) + sum_p A(i, p) * B[p, 0:NV*lanes], for MR rows i at once; A(i, p) is
// A[i*sar + p*sac], so the same kernel reads a matrix or its transpose. Sums run over p in order.
template <class T, int MR, int NV>
static inline void block(T* C, int64_t ldc, const T* A, int64_t sar, int64_t sac, const T* B, int64_t ldb,
                         int64_t kc, const T* init) {
    typedef typename Vec<T>::type V;
    constexpr int L = Vec<T>::lanes;
    V acc[MR][NV];
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v) acc[i][v] = init ? load(init + v * L) : V{};
    for (int64_t p = 0; p < kc; ++p) {
        V b[NV];
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v) b[v] = load(B + p * ldb + v * L);
#pragma GCC unroll 8
        for (int i = 0; i < MR; ++i) {
            V a = splat<T>(A[i * sar + p * sac]);
#pragma GCC unroll 8
            for (int v = 0; v < NV; ++v) acc[i][v] += a * b[v];
        }
    }
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v) store(C + i * ldc + v * L, acc[i][v]);
}

// Rows in blocks of MR: 8 rows of up to 3 vectors (24 accumulators), 6 of 4, within the 32 vector
// registers of AVX-512 with B's vectors and A's broadcast (measured: 8 rows run twice as fast as 4, and
// 12 or 16 rows of 1-2 vectors slower than 8, their accumulators no longer all in registers). The last
// rows go in blocks of 4, 2 and 1; a row's sums are the same in any block.
template <class T, int NV>
static void panel(T* C, int64_t ldc, const T* A, int64_t sar, int64_t sac, const T* B, int64_t ldb, int64_t m,
                  int64_t kc, const T* init) {
    constexpr int MR = NV <= 3 ? 8 : 6;
    int64_t i = 0;
    for (; i + MR <= m; i += MR) block<T, MR, NV>(C + i * ldc, ldc, A + i * sar, sar, sac, B, ldb, kc, init);
    for (; i + 4 <= m; i += 4) block<T, 4, NV>(C + i * ldc, ldc, A + i * sar, sar, sac, B, ldb, kc, init);
    for (; i + 2 <= m; i += 2) block<T, 2, NV>(C + i * ldc, ldc, A + i * sar, sar, sac, B, ldb, kc, init);
    for (; i < m; ++i) block<T, 1, NV>(C + i * ldc, ldc, A + i * sar, sar, sac, B, ldb, kc, init);
}

// C [m, nv*lanes] = init + A [m, kc] @ B [kc, nv*lanes], in panels of at most four vectors.
template <class T>
static void gemm(T* C, int64_t ldc, const T* A, int64_t sar, int64_t sac, const T* B, int64_t ldb, int64_t m,
                 int64_t kc, int64_t nv, const T* init) {
    constexpr int L = Vec<T>::lanes;
    for (int64_t v0 = 0; v0 < nv; v0 += 4) {
        const int64_t n = nv - v0 < 4 ? nv - v0 : 4;
        T* c = C + v0 * L;
        const T* b = B + v0 * L;
        const T* z = init ? init + v0 * L : nullptr;
        switch (n) {
            case 1: panel<T, 1>(c, ldc, A, sar, sac, b, ldb, m, kc, z); break;
            case 2: panel<T, 2>(c, ldc, A, sar, sac, b, ldb, m, kc, z); break;
            case 3: panel<T, 3>(c, ldc, A, sar, sac, b, ldb, m, kc, z); break;
            default: panel<T, 4>(c, ldc, A, sar, sac, b, ldb, m, kc, z); break;
        }
    }
}

// exp on a float vector: Cephes' expf (range reduction by ln 2, degree-6 polynomial), within 2 ulp.
static inline Vec<float>::type exp_vec(Vec<float>::type x) {
    typedef Vec<float>::type V;
    typedef Vec<float>::itype VI;
    x = x > 88.0f ? splat(88.0f) : x;  // NaN passes through both clamps
    x = x < -87.3365447505531f ? splat(-87.3365447505531f) : x;
    const V magic = splat(12582912.0f);  // 1.5 * 2^23: adding it rounds to an integer
    V n = (x * 1.44269504088896341f + magic) - magic;
    V r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    V p = splat(1.9875691500E-4f);
    p = p * r + 1.3981999507E-3f;
    p = p * r + 8.3334519073E-3f;
    p = p * r + 4.1665795894E-2f;
    p = p * r + 1.6666665459E-1f;
    p = p * r + 5.0000001201E-1f;
    p = p * r * r + r + 1.0f;
    VI scale = (__builtin_convertvector(n, VI) + 127) << 23;
    V s;
    std::memcpy(&s, &scale, sizeof(s));
    return p * s;
}

// erf on a float vector: Abramowitz & Stegun 7.1.26 (absolute error under 1.5e-7), the formula
// PyTorch's own vectorized float erf uses, so GELU rounds as nn.GELU does on a float32 CPU model.
// `gauss` receives exp(-x^2), which GELU's derivative needs too.
static inline Vec<float>::type erf_vec(Vec<float>::type x, Vec<float>::type* gauss) {
    typedef Vec<float>::type V;
    V ax = x < 0 ? -x : x;
    V t = 1.0f / (0.3275911f * ax + 1.0f);
    V r = splat(1.061405429f);
    r = r * t - 1.453152027f;
    r = r * t + 1.421413741f;
    r = r * t - 0.284496736f;
    r = r * t + 0.254829592f;
    *gauss = exp_vec(-(x * x));
    V e = 1.0f - r * t * *gauss;
    return x < 0 ? -e : e;
}

// Activations over n values (n a multiple of the lanes): h = act(z) and, when `dz` is given, the
// derivative act'(z) beside it, so the backward pass is one product (GELU's erf and Gaussian are then
// computed once per value, not three times). Vectorized for float; double (the tests' precision)
// takes libm's functions value by value.
template <class T> struct Act;

template <> struct Act<float> {
    typedef Vec<float>::type V;
    static void forward(int act, const float* z, float* h, float* dz, int64_t n, float slope) {
        const V one = splat(1.0f), zero = {};
        for (int64_t i = 0; i < n; i += 16) {
            V x = load(z + i), y, d;
            switch (act) {
                case RELU:  // NaN stays NaN, as in torch.relu; its gradient is threshold_backward's
                    y = !(x <= 0) ? x : zero;
                    d = !(x <= 0) ? one : zero;
                    break;
                case LEAKY_RELU:
                    y = x > 0 ? x : x * slope;
                    d = x > 0 ? one : splat(slope);
                    break;
                case GELU: {
                    V gauss;
                    V cdf = 0.5f * (1.0f + erf_vec(x * 0.70710678118654752f, &gauss));  // gauss: exp(-x^2/2)
                    y = x * cdf;
                    d = cdf + x * (gauss * 0.39894228040143268f);
                    break;
                }
                case SIGMOID:
                    y = 1.0f / (1.0f + exp_vec(-x));
                    d = (1.0f - y) * y;
                    break;
                default:
                    for (int j = 0; j < 16; ++j) y[j] = std::tanh(x[j]);
                    d = 1.0f - y * y;
            }
            store(h + i, y);
            if (dz) store(dz + i, d);
        }
    }
};

template <> struct Act<double> {
    static void forward(int act, const double* z, double* h, double* dz, int64_t n, double slope) {
        for (int64_t i = 0; i < n; ++i) {
            const double x = z[i];
            double y, d;
            switch (act) {
                case RELU:
                    y = !(x <= 0) ? x : 0.0;
                    d = !(x <= 0) ? 1.0 : 0.0;
                    break;
                case LEAKY_RELU:
                    y = x > 0 ? x : x * slope;
                    d = x > 0 ? 1.0 : slope;
                    break;
                case GELU: {
                    const double cdf = 0.5 * (1.0 + std::erf(x * 0.70710678118654752));
                    y = x * cdf;
                    d = cdf + x * (std::exp(-0.5 * x * x) * 0.39894228040143268);
                    break;
                }
                case SIGMOID:
                    y = 1.0 / (1.0 + std::exp(-x));
                    d = (1.0 - y) * y;
                    break;
                default:
                    y = std::tanh(x);
                    d = 1.0 - y * y;
            }
            h[i] = y;
            if (dz) dz[i] = d;
        }
    }
};

// The gradient at a layer's pre-activation: g * act'(z), zero where act' is (ReLU's rule: no gradient
// passes a unit that was off, whatever arrives).
template <class T> static void through_activation(const T* g, const T* dz, T* out, int64_t n) {
    typedef typename Vec<T>::type V;
    constexpr int L = Vec<T>::lanes;
    const V zero = {};
    for (int64_t i = 0; i < n; i += L) {
        V d = load(dz + i);
        store(out + i, d == 0 ? zero : load(g + i) * d);
    }
}

// A model's scratch, reused across calls on a thread (sized for the largest stack seen).
template <class T> struct Scratch {
    std::vector<T> buf;
    T* take(size_t n) {
        if (buf.size() < n) buf.assign(n, T(0));
        return buf.data();
    }
};

// One model's parameters in whole vectors: each hidden layer's weight [fan_in, Wp] and bias [Wp], and
// the output unit's weights [Wp], copied from its flat row (layout.py) with zeros in the padding; the
// offsets of every piece in that row, where Adam writes.
template <class T> struct Padded {
    int64_t depth, in, W, nv, Wp;
    std::vector<int64_t> w_off, b_off, fan_in;
    std::vector<T*> weight, bias;
    T* wout;
    T bout;

    Padded(const StepArgs& a, const T* p, T*& s) : depth(a.depth), in(a.in_dim), W(a.width) {
        nv = (W + Vec<T>::lanes - 1) / Vec<T>::lanes, Wp = nv * Vec<T>::lanes;
        w_off.resize(depth + 1), b_off.resize(depth + 1), fan_in.resize(depth + 1);
        for (int64_t l = 0, o = 0; l <= depth; ++l) {
            fan_in[l] = l == 0 ? in : W;
            const int64_t fan_out = l == depth ? 1 : W;
            w_off[l] = o;
            b_off[l] = o + fan_in[l] * fan_out;
            o = b_off[l] + fan_out;
        }
        weight.resize(depth), bias.resize(depth);
        for (int64_t l = 0; l < depth; ++l) {
            weight[l] = s, s += fan_in[l] * Wp;
            bias[l] = s, s += Wp;
            const T* w = p + w_off[l];
            for (int64_t i = 0; i < fan_in[l]; ++i)
                for (int64_t j = 0; j < Wp; ++j) weight[l][i * Wp + j] = j < W ? w[i * W + j] : T(0);
            for (int64_t j = 0; j < Wp; ++j) bias[l][j] = j < W ? p[b_off[l] + j] : T(0);
        }
        wout = s, s += Wp;
        for (int64_t j = 0; j < Wp; ++j) wout[j] = j < W ? p[w_off[depth] + j] : T(0);
        bout = p[b_off[depth]];
    }

    static size_t size(const StepArgs& a) {  // the scratch a Padded takes
        const int64_t Wp = (a.width + Vec<T>::lanes - 1) / Vec<T>::lanes * Vec<T>::lanes;
        return (a.in_dim + (a.depth - 1) * a.width + a.depth + 1) * Wp;
    }
};

// The forward pass of model k over R rows x [R, in]: per hidden layer Z = prev @ W + b, A = act(Z)
// (with `derivative`, act'(z) is then stored over Z for the backward), H = A scaled by this step's
// dropout mask where there is one (else H is A); the logits into `logit` [R]. Units the model does not
// have are silenced where act(0) is not 0. Z, A and H may be the same buffers (logits only).
template <class T>
static void forward(const StepArgs& a, int64_t k, const Padded<T>& m, const T* x, int64_t R, T* const* Z,
                    T* const* A, T* const* H, bool derivative, const T* keep, T* logit) {
    typedef typename Vec<T>::type V;
    constexpr int L = Vec<T>::lanes;
    const int64_t Wp = m.Wp, W = m.W, own = a.widths[k];
    for (int64_t l = 0; l < m.depth; ++l) {
        const T* prev = l == 0 ? x : H[l - 1];
        const int64_t ld = l == 0 ? m.in : Wp;
        gemm<T>(Z[l], Wp, prev, ld, 1, m.weight[l], Wp, R, m.fan_in[l], m.nv, m.bias[l]);
        Act<T>::forward(a.activation, Z[l], A[l], derivative ? Z[l] : nullptr, R * Wp, T(a.leaky_slope));
        if (a.activation == SIGMOID) {  // sigmoid(0) = 1/2
            for (int64_t r = 0; r < R; ++r)
                for (int64_t j = own; j < Wp; ++j) A[l][r * Wp + j] = 0;
        }
        if (keep) {
            const T* kl = keep + ((l * a.models + k) * R) * W;
            for (int64_t r = 0; r < R; ++r)
                for (int64_t j = 0; j < Wp; ++j)
                    H[l][r * Wp + j] = j < W ? A[l][r * Wp + j] * kl[r * W + j] : T(0);
        }
    }
    const T* top = H[m.depth - 1];
    for (int64_t r = 0; r < R; ++r) {
        V acc = {};
        for (int64_t v = 0; v < m.nv; ++v) acc += load(top + r * Wp + v * L) * load(m.wout + v * L);
        T sum = 0;
        for (int j = 0; j < L; ++j) sum += acc[j];
        logit[r] = sum + m.bout;
    }
}

template <class T> static void step_model(const StepArgs& a, int64_t k, Scratch<T>& scratch) {
    typedef typename Vec<T>::type V;
    constexpr int L = Vec<T>::lanes;
    const int64_t depth = a.depth, in = a.in_dim, W = a.width, R = a.rows;
    const int64_t nv = (W + L - 1) / L, Wp = nv * L;  // hidden widths in whole vectors
    T* p = static_cast<T*>(a.flat) + k * a.params;
    T* m1 = static_cast<T*>(a.m) + k * a.params;
    T* m2 = static_cast<T*>(a.v) + k * a.params;
    const T* x = static_cast<const T*>(a.x) + k * a.x_stride;
    const T* y = static_cast<const T*>(a.y) + k * a.y_stride;
    const T* mask = static_cast<const T*>(a.mask) + k * a.mask_stride;
    const T* keep = static_cast<const T*>(a.keep);

    // Scratch: the padded parameters; the weights transposed [W, Wp] for the backward; per layer z
    // (then act'(z)), a and h (with dropout), all [R, Wp]; the gradients at h and z [R, Wp]; a weight
    // gradient [fan_in, Wp] and a bias gradient [Wp]; logits and deltas [R].
    const int64_t widest_in = in > W ? in : W;
    const size_t need = depth * W * Wp + (3 * depth + 2) * R * Wp + (widest_in + 1) * Wp + 2 * R;
    T* s = scratch.take(Padded<T>::size(a) + need);
    const Padded<T> model(a, p, s);
    std::vector<T*> WT(depth), Z(depth), A(depth), H(depth);
    for (int64_t l = 0; l < depth; ++l) {
        WT[l] = s, s += W * Wp;
        const T* w = p + model.w_off[l];
        for (int64_t j = 0; j < W; ++j)
            for (int64_t i = 0; i < Wp; ++i) WT[l][j * Wp + i] = i < model.fan_in[l] ? w[i * W + j] : T(0);
    }
    for (int64_t l = 0; l < depth; ++l) {
        Z[l] = s, s += R * Wp;
        A[l] = s, s += R * Wp;
        H[l] = keep ? s : A[l], s += R * Wp;
    }
    T* G = s; s += R * Wp;   // gradient at a layer's output
    T* D = s; s += R * Wp;   // gradient at its pre-activation
    T* gW = s; s += widest_in * Wp;
    T* gb = s; s += Wp;
    T* logit = s; s += R;
    T* delta = s;
    const std::vector<int64_t>& w_off = model.w_off, &b_off = model.b_off, &fan_in = model.fan_in;
    const T* wout = model.wout;

    forward<T>(a, k, model, x, R, Z.data(), A.data(), H.data(), true, keep, logit);
    const T* top = H[depth - 1];

    // Loss and its gradient at the logits: the mean over the model's own rows.
    T count = 0, loss = 0;
    for (int64_t r = 0; r < R; ++r) count += mask[r];
    if (count < 1) count = 1;
    for (int64_t r = 0; r < R; ++r) {
        const T z = logit[r];
        const T bce = (z > 0 ? z : T(0)) - z * y[r] + std::log1p(std::exp(-std::fabs(z)));
        loss += bce * mask[r];
        const T sig = T(1) / (T(1) + std::exp(-z));
        delta[r] = (sig - y[r]) * mask[r] / count;
    }
    static_cast<T*>(a.loss)[k] = loss;

    // Backward, into the flat layout's order: each layer's weight gradient, then its bias gradient,
    // consumed by Adam as it is made (the parameters are read above, before any update).
    const T b1 = T(a.beta1), b2 = T(a.beta2), eps = T(a.eps);
    T* tk = static_cast<T*>(a.t) + k;
    const T step = *tk, lr = static_cast<const T*>(a.lr)[k];
    const T bc1 = T(1) - std::pow(b1, step), bc2_sqrt = std::sqrt(T(1) - std::pow(b2, step));
    const T step_size = lr / bc1;
    auto adam = [&](int64_t i, T g) {
        const T mm = m1[i] + (g - m1[i]) * (T(1) - b1);
        const T vv = m2[i] * b2 + g * g * (T(1) - b2);
        m1[i] = mm;
        m2[i] = vv;
        p[i] -= step_size * mm / (std::sqrt(vv) / bc2_sqrt + eps);
    };

    {  // the output layer: one unit
        T gbo = 0;
        for (int64_t r = 0; r < R; ++r) gbo += delta[r];
        gemm<T>(gW, Wp, delta, 0, 1, top, Wp, 1, R, nv, nullptr);  // [1, Wp] = delta^T @ top
        for (int64_t r = 0; r < R; ++r) {
            const V d = splat<T>(delta[r]);
            for (int64_t v = 0; v < nv; ++v) store(G + r * Wp + v * L, d * load(wout + v * L));
        }
        for (int64_t j = 0; j < W; ++j) adam(w_off[depth] + j, gW[j]);
        adam(b_off[depth], gbo);
    }
    for (int64_t l = depth - 1; l >= 0; --l) {
        if (keep) {
            const T* kl = keep + ((l * a.models + k) * R) * W;
            for (int64_t r = 0; r < R; ++r)
                for (int64_t j = 0; j < W; ++j) G[r * Wp + j] *= kl[r * W + j];
        }
        through_activation<T>(G, Z[l], D, R * Wp);
        const T* prev = l == 0 ? x : H[l - 1];
        const int64_t ld = l == 0 ? in : Wp;
        // weight gradient [fan_in, Wp] = prev^T @ D: A(i, r) = prev[r * ld + i]
        gemm<T>(gW, Wp, prev, 1, ld, D, Wp, fan_in[l], R, nv, nullptr);
        for (int64_t j = 0; j < Wp; ++j) gb[j] = 0;
        for (int64_t r = 0; r < R; ++r)
            for (int64_t v = 0; v < nv; ++v) store(gb + v * L, load(gb + v * L) + load(D + r * Wp + v * L));
        if (l > 0) gemm<T>(G, Wp, D, Wp, 1, WT[l], Wp, R, W, nv, nullptr);  // gradient at the layer below
        const int64_t fi = fan_in[l];
        for (int64_t i = 0; i < fi; ++i)
            for (int64_t j = 0; j < W; ++j) adam(w_off[l] + i * W + j, gW[i * Wp + j]);
        for (int64_t j = 0; j < W; ++j) adam(b_off[l] + j, gb[j]);
    }
}

// The logits of model k for R rows, forward only (the validation and selection passes): the step's
// forward pass, in two buffers that take turns.
template <class T> static void logits_model(const StepArgs& a, int64_t k, Scratch<T>& scratch) {
    const int64_t Wp = (a.width + Vec<T>::lanes - 1) / Vec<T>::lanes * Vec<T>::lanes, R = a.rows;
    T* s = scratch.take(Padded<T>::size(a) + 2 * R * Wp);
    const Padded<T> model(a, static_cast<const T*>(a.flat) + k * a.params, s);
    std::vector<T*> turns(a.depth);
    for (int64_t l = 0; l < a.depth; ++l) turns[l] = s + (l % 2) * R * Wp;
    const T* x = static_cast<const T*>(a.x) + k * a.x_stride;
    T* out = static_cast<T*>(a.loss) + k * a.y_stride;
    forward<T>(a, k, model, x, R, turns.data(), turns.data(), turns.data(), false, nullptr, out);
}

// For the length of a call: denormals flushed to zero and read as zero, whatever the calling thread's
// mode, which is restored after.
struct FlushDenormals {
#if defined(__SSE__)
    const unsigned int mode = _mm_getcsr();
    FlushDenormals() { _mm_setcsr(mode | 0x8040); }
    ~FlushDenormals() { _mm_setcsr(mode); }
#endif
};

template <class T> static void logits(const StepArgs& a) {
    static thread_local Scratch<T> scratch;
    const FlushDenormals flushed;
    for (int64_t k = 0; k < a.models; ++k) logits_model<T>(a, k, scratch);
}

template <class T> static void step(const StepArgs& a) {
    static thread_local Scratch<T> scratch;
    const FlushDenormals flushed;
    T* loss = static_cast<T*>(a.loss);
    T* t = static_cast<T*>(a.t);
    for (int64_t k = 0; k < a.models; ++k) {
        if (!a.stepping[k]) {
            loss[k] = 0;
            continue;
        }
        t[k] += 1;
        step_model<T>(a, k, scratch);
    }
}

}  // namespace

extern "C" {
int wz_abi_version() { return 1; }
void wz_step_f32(const StepArgs* a) { step<float>(*a); }
void wz_step_f64(const StepArgs* a) { step<double>(*a); }
// logits [models, rows] into `loss` (row stride y_stride); reads flat, widths, x and the sizes only
void wz_logits_f32(const StepArgs* a) { logits<float>(*a); }
void wz_logits_f64(const StepArgs* a) { logits<double>(*a); }
}
