"""The model registry (service ``registry``): versions on MLflow and their lifecycle.

Owns: versions with semantic versions (``semver.py``), their statuses and the allowed
transitions (``status.py``), what a registration carries (``input.py``), registering
(``registration.py``), reading versions, transitions and aliases (``reads.py``), the
validation gates (``gates.py``), what a rollback of
production may restore (``promotion.py``), the removal of old versions (``cleanup.py``)
and the MLflow side (``mlflow.py``: models, versions, tags, the ``champion`` and
``challenger`` aliases), the per-model write lock shared by every daemon on one
PostgreSQL store (``locks.py``); tables
``registry_versions``, ``registry_transitions`` and ``registry_aliases``
(``tables.py``); metric ``mlwarden_model_info``; events ``version_registered`` and
``version_status_changed``. No background task.

Exposes (``interfaces.py``): ``VersionRecords`` (reading versions), ``VersionLifecycle``
(moving them through their statuses; the rollouts service), ``VersionRegistrar``
(registering a trained model; the training jobs), and the typed records they hand out
(``records.py``: ``VersionRecord``, the gate report, ``DirectPromotion``,
``DirectRollback``, ``RollbackPlan``; it imports nothing else of the registry).

May import: ``core`` and the contract.
"""
