#!/usr/bin/env bash
# Placeholder: the train-stage work makes MLX's Linux CPU wheel use OpenBLAS here.
exit 0
