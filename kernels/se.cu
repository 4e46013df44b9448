// SE block (lib/srcnn.lua:232-244) primitives: the squeeze (mean over each channel plane) and
// the excite scale. The tiny 1x1 convolutions and the sigmoid between them run as GEMMs and
// CuPy elementwise operations.
//
// w2x_channel_mean_f32:  x float32 (C, N, H, W) -> z float32 (C, N), z[c, n] = mean of plane (c, n)
//   The sum is accumulated in double and rounded once, so it is at least as exact as the
//   reference's pairwise float32 sum; the two differ by float32 rounding only.
//   Launch: block (BLOCK, 1, 1), BLOCK = 256 (w2x/nn/cuda.py:BLOCK; any multiple of 32 <= 1024),
//   grid (min(C*N, 2^31 - 1), 1, 1); block b reduces planes b, b + gridDim.x, ...
//   reference: w2x/nn/ops.py:channel_mean
//
// w2x_se_scale_f32:  in place  x[c, n, :, :] *= z[c, n];  x (C, N, H, W), z (C, N)
//   Launch: block (BLOCK, 1, 1), grid (ceil(H*W / BLOCK), min(C*N, 65535), 1).
//   reference: w2x/nn/ops.py:se_scale

#define W2X_WARP 32

extern "C" __global__ void w2x_channel_mean_f32(const float* __restrict__ x, float* __restrict__ z,
                                                int planes, int HW) {
    __shared__ double warp_sums[1024 / W2X_WARP];
    const int lane = threadIdx.x % W2X_WARP;
    const int warp = threadIdx.x / W2X_WARP;
    const int n_warps = blockDim.x / W2X_WARP;
    for (int p = blockIdx.x; p < planes; p += gridDim.x) {
        const float* plane = x + (long long)p * HW;
        double s = 0.0;
        for (int q = threadIdx.x; q < HW; q += blockDim.x) s += plane[q];
        for (int d = W2X_WARP / 2; d > 0; d /= 2) s += __shfl_down_sync(0xffffffffu, s, d);
        if (lane == 0) warp_sums[warp] = s;
        __syncthreads();
        if (warp == 0) {
            s = lane < n_warps ? warp_sums[lane] : 0.0;
            for (int d = W2X_WARP / 2; d > 0; d /= 2) s += __shfl_down_sync(0xffffffffu, s, d);
            if (lane == 0) z[p] = (float)(s / HW);
        }
        __syncthreads();  // warp_sums is reused by the next plane
    }
}

extern "C" __global__ void w2x_se_scale_f32(float* __restrict__ x, const float* __restrict__ z,
                                            int planes, int HW) {
    const int q = blockIdx.x * blockDim.x + threadIdx.x;
    if (q >= HW) return;
    for (int p = blockIdx.y; p < planes; p += gridDim.y) x[(long long)p * HW + q] *= z[p];
}
