"""The plain baselines ``tensorfab bench`` compares against, written the way tutorials write them.

One module per workload, readable on its own: ``lenet_mnist`` (the GPU tutorials' CNN loop),
``bert_base_ner`` and ``minilm_ner`` (the Hugging Face token-classification tutorial), whose
shared loop is ``ner``. Nothing here uses tensorfab's engine: that is the point.
"""
