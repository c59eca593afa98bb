"""Ingest (service ``ingest``): predictions and labels in, profiles and outcomes out.

Owns: the decoding and validation of batches (``decode.py``, ``records.py``,
``validate.py``, ``batches.py``, ``prepare.py``), the single writer and its open
buckets (``ledger.py``, ``work.py``, ``state.py``, ``startup.py``: the reference load
and the journal replay; ``orphans.py``: a gone daemon's journal taken over), the
windows of closed buckets (``window.py`` keeps them in step with the store,
``bucket_window.py`` holds one in memory, ``shared.py``: every daemon's), how ids are
stored (``ids.py``: keyed digests with encryption on; ``id_migration.py``: the id key
and the rewrite of ids stored in clear); tables ``prediction_batches``,
``prediction_ids``, ``outcomes``, ``profile_buckets``, ``ingest_journal``
(``tables.py``; their statements: ``predictions.py``), ``ingest_id_key`` and
``reference_profiles``; metrics
``mlwarden_predictions_total``, ``mlwarden_labels_total``,
``mlwarden_ingest_rejected_total``, ``mlwarden_prediction_latency_seconds``; background
tasks ``ingest-writer``, ``ingest-housekeeping`` and ``ingest-reference-<model>``.

Exposes (``interfaces.py``): ``WindowSource`` (window profiles, outcomes, refused
batches; for the monitor), ``PredictionSink`` (the gateway records its answers),
``PredictionCounter`` (the training-data check).

May import: ``profiles``, ``core``, the contract, and ``registry.interfaces`` (records
that name no version take the production version).
"""
