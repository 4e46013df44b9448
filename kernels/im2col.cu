// im2col: unfold every kh x kw window of an unpadded convolution into one column, so that
// a convolution becomes one GEMM  W2d (OC, C*kh*kw) @ cols (C*kh*kw, N*OH*OW).
//
//   x     float32 (C, N, H, W), C-contiguous
//   cols  (C*kh*kw, M) with M = N*OH*OW, C-contiguous:
//         float32 for w2x_im2col_f32, IEEE half (raw 16-bit) for w2x_im2col_f16
//   cols[(c*kh + i)*kw + j, (n*OH + oy)*OW + ox] = x[c, n, oy*stride + i, ox*stride + j]
//   OH = (H - kh) / stride + 1, OW = (W - kw) / stride + 1
//
// Launch, with BLOCK = 256 threads (w2x/nn/cuda.py:BLOCK):
//   block (BLOCK, 1, 1), grid (ceil(M / BLOCK), min(C*kh*kw, 65535), 1).
// A thread owns one column m and writes it in rows blockIdx.y, blockIdx.y + gridDim.y, ...;
// neighbouring threads write neighbouring addresses of a row (coalesced).
// The f16 variant rounds to nearest even (cvt.rn), as float32 -> float16 casts do in NumPy.
//
// reference: w2x/nn/ops.py:im2col

__device__ __forceinline__ void w2x_store(float* p, float v) { *p = v; }

__device__ __forceinline__ void w2x_store(unsigned short* p, float v) {
    unsigned short h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(v));
    *p = h;
}

template <typename T>
__device__ __forceinline__ void w2x_im2col(const float* __restrict__ x, T* __restrict__ cols,
                                           int C, int N, int H, int W, int kh, int kw,
                                           int stride, int OH, int OW) {
    const int M = N * OH * OW;
    const int m = blockIdx.x * blockDim.x + threadIdx.x;
    if (m >= M) return;
    const int ox = m % OW;
    const int oy = (m / OW) % OH;
    const int n = m / (OW * OH);
    const int rows = C * kh * kw;
    for (int r = blockIdx.y; r < rows; r += gridDim.y) {
        const int j = r % kw;
        const int i = (r / kw) % kh;
        const int c = r / (kw * kh);
        const long long src = ((long long)(c * N + n) * H + oy * stride + i) * W + ox * stride + j;
        w2x_store(cols + (long long)r * M + m, x[src]);
    }
}

extern "C" __global__ void w2x_im2col_f32(const float* __restrict__ x, float* __restrict__ cols,
                                          int C, int N, int H, int W, int kh, int kw,
                                          int stride, int OH, int OW) {
    w2x_im2col(x, cols, C, N, H, W, kh, kw, stride, OH, OW);
}

extern "C" __global__ void w2x_im2col_f16(const float* __restrict__ x,
                                          unsigned short* __restrict__ cols,
                                          int C, int N, int H, int W, int kh, int kw,
                                          int stride, int OH, int OW) {
    w2x_im2col(x, cols, C, N, H, W, kh, kw, stride, OH, OW);
}
