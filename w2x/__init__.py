"""w2x: waifu2x rebuilt from scratch in NumPy/CuPy.

    import w2x
    out = w2x.convert(pil_or_array, mode="noise_scale", noise_level=1, style="art")
    model = w2x.load_model("cunet/art/scale2.0x_model.json")   # the original's JSON
    y = w2x.reconstruct.scale(model, x)                         # float (3,H,W) -> (3,2H,2W)
"""
from w2x import reconstruct
from w2x.nn.models import Model, ModelConfig, ModelFormatError, load_model
from w2x.pipeline import Options, convert, process
from w2x.version import __version__

__all__ = ["Model", "ModelConfig", "ModelFormatError", "Options", "convert", "load_model",
           "process", "reconstruct"]
