"""compression-layer: train small LLMs to compress verbose context."""
__version__ = "0.1.0"
