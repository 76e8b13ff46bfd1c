"""Quality gates: Great Expectations suites on every stage's output, before the next stage reads it.

A gate validates Spark DataFrames where they are (GX's Spark execution engine; nothing is
collected to the driver but metrics and a few sample values). Each gate checks one stage's
output tables for a day or a range of days:

=========== ===================================================================================
gate        checks
=========== ===================================================================================
raw         the canonical columns and types (extra, missing or renamed columns fail), event ids
            present, rows = what ingest wrote (its manifests)
clean       columns and types, ids not null, event types allowed, times inside the partition's
            day, event_id unique, values >= 0, quarantine reasons known, rows in = clean +
            quarantined (the manifest against a fresh count of the raw rows)
sessions    session ids present, 1 <= position <= max events, start <= time, gaps within the
            gap rule, a predecessor exactly when not first, rows = clean rows (event ids were
            checked unique by the clean gate; sessionize keeps one row per clean event)
sequences   arrays of equal size = length <= max length, indexes inside the vocabularies,
            one row per user, splits well-formed, vocabulary indexes unique and contiguous
graphs      counts >= 1, weights > 0, node ids inside the vocabularies, no self-loops (when
            configured)
embeddings  per method: one row per user and item inference wrote (ids present and unique), the
            model's dimension and version, vectors finite and non-zero (their norms)
=========== ===================================================================================

The regression gate of the nightly models (no publish when NDCG@10 drops) is in
``regression.py``; it writes its results in the same layout.

Drift against the previous day (row-count change, quarantined share, new-item rate) is a
warning or a failure, by ``gates.drift``. A gate writes ``_gates/stage=S/dt=D.json`` (the GX
results) and ``.md`` (a readable summary) under the warehouse, and raises ``GateFailed``
with a short message (which expectation, on how many rows, sample values) when a critical
expectation fails.

Layout: ``check.py`` runs expectations with GX and records a gate; ``expect.py`` holds the
shared expectation builders; one module per gate, registered in ``registry.py``.
"""
