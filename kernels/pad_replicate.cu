// pad_replicate: edge-replicate padding of an image (iproc.padding: image.warp with "clamp",
// nagadomi/waifu2x lib/iproc.lua:82-98); every output pixel copies the nearest input pixel.
//
//   x  float32 (C, H, W), C-contiguous
//   y  float32 (C, OH, OW), OH = H + top + bottom, OW = W + left + right:
//      y[c, oy, ox] = x[c, clamp(oy - top, 0, H - 1), clamp(ox - left, 0, W - 1)]
//
// Launch, with BLOCK = 256 threads (w2x/nn/cuda.py:BLOCK):
//   block (BLOCK, 1, 1), grid (ceil(OH*OW / BLOCK), min(C, 65535), 1).
// A thread owns pixel q = oy*OW + ox of channels blockIdx.y, blockIdx.y + gridDim.y, ...
//
// reference: w2x/nn/ops.py:pad_replicate

extern "C" __global__ void w2x_pad_replicate_f32(const float* __restrict__ x, float* __restrict__ y,
                                                 int C, int H, int W, int top, int left,
                                                 int OH, int OW) {
    const int q = blockIdx.x * blockDim.x + threadIdx.x;
    if (q >= OH * OW) return;
    const int iy = min(max(q / OW - top, 0), H - 1);
    const int ix = min(max(q % OW - left, 0), W - 1);
    for (int c = blockIdx.y; c < C; c += gridDim.y) {
        y[(long long)c * OH * OW + q] = x[((long long)c * H + iy) * W + ix];
    }
}
