"""w2x: waifu2x rebuilt from scratch in NumPy/CuPy."""
from .models import Model, ModelConfig, ModelFormatError, load_model

__all__ = ["Model", "ModelConfig", "ModelFormatError", "load_model"]
