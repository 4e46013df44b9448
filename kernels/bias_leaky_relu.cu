// bias_leaky_relu: the epilogue of every layer, in place on the GEMM (or col2im) output:
//   y[o, m] = y[o, m] + bias[o];  then, if has_slope, y = max(y, slope*y)  (LeakyReLU(slope)
//   for 0 <= slope < 1; slope 0 is the ReLU of the SE squeeze).
//
//   y     float32 (OC, M), C-contiguous (any activation (OC, N, H, W) with M = N*H*W)
//   bias  float32 (OC,)
//
// The float operations are the reference's, one add then max(v, v*slope): no contraction
// into an FMA is possible, so the result matches it bit for bit.
//
// Launch, with BLOCK = 256 threads (w2x/nn/cuda.py:BLOCK):
//   block (BLOCK, 1, 1), grid (ceil(M / BLOCK), min(OC, 65535), 1).
// A thread owns column m of rows o = blockIdx.y, blockIdx.y + gridDim.y, ...
//
// reference: w2x/nn/ops.py:bias_leaky_relu

extern "C" __global__ void w2x_bias_leaky_relu_f32(float* __restrict__ y,
                                                   const float* __restrict__ bias,
                                                   int OC, int M, float slope, int has_slope) {
    const int m = blockIdx.x * blockDim.x + threadIdx.x;
    if (m >= M) return;
    for (int o = blockIdx.y; o < OC; o += gridDim.y) {
        float* p = y + (long long)o * M + m;
        float v = *p + bias[o];
        if (has_slope) v = fmaxf(v, v * slope);
        *p = v;
    }
}
