"""The pipeline side of the models: the warehouse as ``SequenceData`` (``data.py``, the one
data-access module), training and evaluation of a method as of a day (``train.py``), the metrics
table (``metrics.py``) and the embedding tables (``infer.py``). The torch code is ``models/``."""
