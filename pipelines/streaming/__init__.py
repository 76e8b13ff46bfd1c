"""Real time: ``seqrep stream`` (``stream.py``), Spark Structured Streaming that folds fresh events
into live user vectors between nights (the tables it writes: ``pipelines/serving/live.py``)."""
