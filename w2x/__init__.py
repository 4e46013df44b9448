"""w2x: waifu2x rebuilt from scratch in NumPy/CuPy.

    import w2x
    out = w2x.convert(pil_or_array, mode="noise_scale", noise_level=1, style="art", scale=2)
    model = w2x.load_model("upconv_7/art/scale2.0x")           # or a path to the original's JSON
    y = w2x.reconstruct.upscale2x(model, x)                     # float (3,H,W) -> (3,2H,2W)
"""
from w2x import reconstruct
from w2x.api import convert, load_model
from w2x.nn.models import Model, ModelConfig, ModelFormatError
from w2x.pipeline import Options

__all__ = ["Model", "ModelConfig", "ModelFormatError", "Options", "__version__", "convert", "load_model",
           "reconstruct"]


def __getattr__(name: str):
    """``w2x.__version__``, read when first asked for (installed metadata costs ~20 ms)."""
    if name == "__version__":
        from w2x.version import __version__
        return __version__
    raise AttributeError(f"module 'w2x' has no attribute {name!r}")
