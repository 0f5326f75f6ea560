"""Causal language modelling on text: corpus (documents), tokenizer (bpe | bytes | gpt2), stream (packed,
memory-mapped, step-indexed windows; validation split by document), metrics (loss, perplexity, bits per
token and per byte, accuracy), task (TextTask).
"""

from interfere.tasks.text.task import TextTask

__all__ = ["TextTask"]
