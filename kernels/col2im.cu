// col2im: scatter-add GEMM columns back into an image, the adjoint of im2col; the second
// half of a transposed convolution (torch SpatialFullConvolution = GEMM + col2im).
//
//   cols  float32 (OC*kh*kw, N*H*W), C-contiguous: cols[(o*kh + i)*kw + j, (n*H + iy)*W + ix]
//         is what input pixel (iy, ix) adds to output pixel
//         (iy*stride + i - pad, ix*stride + j - pad)
//   y     float32 (OC, N, OH, OW), C-contiguous, OH = (H - 1)*stride - 2*pad + kh (OW alike)
//
// Written as a gather, one thread per output pixel, so no atomics are needed: the thread adds
// the taps (i, j) that land on it, i outer and j inner, starting from 0.0f, which is the order
// in which the reference's loops add them: the sums match it bit for bit.
//
// Launch, with BLOCK = 256 threads (w2x/nn/cuda.py:BLOCK):
//   block (BLOCK, 1, 1), grid (ceil(OH*OW / BLOCK), min(OC*N, 65535), 1).
// A thread owns pixel q = oy*OW + ox of the planes p = o*N + n = blockIdx.y,
// blockIdx.y + gridDim.y, ...
//
// reference: w2x/nn/ops.py:col2im

extern "C" __global__ void w2x_col2im_f32(const float* __restrict__ cols, float* __restrict__ y,
                                          int OC, int N, int H, int W, int kh, int kw,
                                          int stride, int pad, int OH, int OW) {
    const int q = blockIdx.x * blockDim.x + threadIdx.x;
    if (q >= OH * OW) return;
    const int ox = q % OW;
    const int oy = q / OW;
    const long long M = (long long)N * H * W;  // columns of cols
    for (int p = blockIdx.y; p < OC * N; p += gridDim.y) {
        const int o = p / N;
        const int n = p % N;
        float acc = 0.0f;
        for (int i = 0; i < kh; ++i) {
            const int ty = oy + pad - i;  // = iy*stride for a tap that lands here
            if (ty < 0 || ty % stride != 0 || ty / stride >= H) continue;
            const int iy = ty / stride;
            for (int j = 0; j < kw; ++j) {
                const int tx = ox + pad - j;
                if (tx < 0 || tx % stride != 0 || tx / stride >= W) continue;
                const int ix = tx / stride;
                const long long row = (o * kh + i) * kw + j;
                acc += cols[row * M + ((long long)n * H + iy) * W + ix];
            }
        }
        y[(long long)p * OH * OW + q] = acc;
    }
}
