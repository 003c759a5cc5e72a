"""Using a trained compressor: the Python API (Compressor) and a fused, standalone export (fuse)."""

from compression_layer.compress.adapter import DEFAULT_ADAPTER
from compression_layer.compress.compressor import Compression, Compressor
from compression_layer.compress.errors import (
    AdapterNotFoundError,
    CompressError,
    InputTooLongError,
    ModelMismatchError,
)

__all__ = [
    "DEFAULT_ADAPTER",
    "AdapterNotFoundError",
    "Compression",
    "CompressError",
    "Compressor",
    "InputTooLongError",
    "ModelMismatchError",
]
