"""The data half of the pipeline: preprocess, split, sanitize."""
