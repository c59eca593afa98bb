"""Profiles: what mlwarden keeps of a model's observations instead of raw rows.

Owns: ``Layout`` (``layout.py``: a model's columns, edges and categories), ``Profile``
and ``Columns`` (``profile.py``, ``columns.py``: the mergeable per-feature histograms,
moments, category counts and bottom-k samples), the stored form of bucket profiles
(``blobs.py``), and the reference data loaded into a reference profile
(``reference.py``; table ``reference_profiles``, written by the ingest service).

Exposes: the data both the ingest service (which writes profiles) and the monitoring
services (which read windows of them) work on. No background task, no metric.

May import: ``core`` and the contract.
"""
