"""Serving: read-only SQL and nearest-neighbour queries on the published embedding tables
(``query.py``) and the FAISS item index they use (``index.py``)."""
