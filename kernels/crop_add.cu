// crop_add: the skip connection of a U-Net branch, a + b cropped by `crop` on every side
// (nn.SpatialZeroPadding(-crop) then nn.CAddTable, lib/srcnn.lua:514-573).
//
//   a    float32 (C, N, H, W), C-contiguous
//   b    float32 (C, N, H + 2*crop, W + 2*crop), C-contiguous
//   out  float32 (C, N, H, W):  out[c, n, y, x] = a[c, n, y, x] + b[c, n, y + crop, x + crop]
//
// Launch, with BLOCK = 256 threads (w2x/nn/cuda.py:BLOCK):
//   block (BLOCK, 1, 1), grid (ceil(H*W / BLOCK), min(C*N, 65535), 1).
// A thread owns pixel q = y*W + x of planes p = c*N + n = blockIdx.y, blockIdx.y + gridDim.y, ...
//
// reference: w2x/nn/ops.py:crop_add

extern "C" __global__ void w2x_crop_add_f32(const float* __restrict__ a,
                                            const float* __restrict__ b, float* __restrict__ out,
                                            int planes, int H, int W, int crop) {
    const int q = blockIdx.x * blockDim.x + threadIdx.x;
    if (q >= H * W) return;
    const int x = q % W;
    const int y = q / W;
    const int BW = W + 2 * crop;
    const long long b_plane = (long long)(H + 2 * crop) * BW;
    for (int p = blockIdx.y; p < planes; p += gridDim.y) {
        const long long i = (long long)p * H * W + q;
        out[i] = a[i] + b[p * b_plane + (long long)(y + crop) * BW + x + crop];
    }
}
