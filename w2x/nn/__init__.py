"""The network: waifu2x's four architectures as im2col + GEMM, and their JSON weights.

Reading order: ``ops.py`` (the reference primitives), ``layers.py`` (Conv2d, ConvTranspose2d),
``archs.py`` (vgg_7, upconv_7, cunet, upcunet), ``models.py`` (the JSON loader),
``backend.py`` (numpy / numba / cupy).  This package imports nothing else of w2x.
"""
