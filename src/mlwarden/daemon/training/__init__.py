"""Training (services ``jobs`` and ``scheduler``): triggers, the job queue, the runner.

Owns: the training-job queue and its runner (``jobs.py``, ``queue.py``, ``records.py``,
``attempt.py``, ``steps.py``: at most ``training.max_concurrent_jobs`` at once, timeouts
that kill the process tree, retries with backoff, the runner lock; table ``training_jobs``; metrics
``mlwarden_training_jobs``, ``mlwarden_training_jobs_total``,
``mlwarden_training_job_duration_seconds``; events ``training_started``,
``training_succeeded``, ``training_failed``, ``training_cancelled``; tasks
``jobs-runner`` and ``training-job-<id>``), and the scheduler that evaluates each
model's trigger plugins on events and ticks (``scheduler.py``: table ``trigger_state``;
metric ``mlwarden_triggers_fired_total``; event ``trigger_fired``; task
``scheduler-tick``).

Exposes: the services' public methods (``submit``, ``get``, ``list``, ``cancel``), which
return job records (``JobRecord``, defined with the table in ``records.py``).

May import: ``core``, the contract, ``ingest.interfaces`` (outcomes for triggers, the
prediction count) and ``registry.interfaces`` (registering what a job trained).
"""
