"""The train stage: LoRA fine-tuning of an MLX model with mlx-lm, driven by the top-level params."""
