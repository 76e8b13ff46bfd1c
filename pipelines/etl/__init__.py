"""The Spark ETL: source adapters and ingest, clean, sessionize, sequences, graphs (one module per
stage, registered in ``stages.py``), the Spark session factory and the synthetic log generator.

It reads and writes the warehouse through ``pipelines.core`` only."""
