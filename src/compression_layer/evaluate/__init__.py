"""Evaluation of a trained adapter: batched greedy generation, compression and fidelity metrics,
naive baselines at the same ratio, and test loss / perplexity."""
