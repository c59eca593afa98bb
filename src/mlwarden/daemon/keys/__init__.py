"""Encryption at rest on the daemon: the key ring in use and the ``mlwarden keys`` command.

Owns: the Warden's part that holds the ring (``at_rest.py``: ``EncryptionAtRest``, as
``warden.at_rest``: makes the daemon's sealer the process's, checks at start that every
stored object is sealed by a key of the ring, answers ``/api/system/keys``, re-reads
and retires keys, rotates them in the background, records what could not be opened;
task ``key-rotation``, audit actions ``keys_reload``, ``keys_rotate`` and
``decryption_failed``), the command's control of a running or stopped daemon
(``command.py``: ``keys new | rotate | status``, over the admin routes or in the
command's own process), and the step-by-step guidance for a ring mlwarden cannot edit
(``guide.py``: an environment variable, a systemd credential). No table, no metric: the
sealing itself, the ring's sources and the rotation's work are core's
(``core/encryption.py``, ``core/keys.py``, ``core/rotation.py``).

Exposes: ``EncryptionAtRest`` to the Warden and the API, and the command's functions to
the CLI, which hands in the Warden's ``offline_at_rest`` (this package sits below the
Warden in the import layers and never imports it). Nothing is imported here, so that
``mlwarden keys`` loads only what the subcommand needs.

May import: ``core``, the contract, and the services' table modules whose columns are
sealed (``at_rest.sealed_columns``); it is above the services in the layers
(pyproject.toml).
"""
