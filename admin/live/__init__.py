"""The live view of the database while a job runs, and what it adds to the job's record.

- ``sampler``: about once a second per running job (not per viewer), the job's backend as
  PostgreSQL sees it: its statement and wait, what blocks it, what queues behind it, the
  progress of CREATE INDEX / CLUSTER / VACUUM / ANALYZE;
- ``watch``: the supervisor's side: samples to the job's row (``jobs.live``) and, when
  they change, to the job's log ("waited 8.2 s for ACCESS EXCLUSIVE on clients, ...");
  errors completed with what the last samples saw;
- ``naming``: errors that say what happened (lock timeout, statement timeout, deadlock);
- ``schedule``: lock retries (``LOCK_RETRIES``, a job's ``lock_retries`` option).

``naming`` and ``schedule`` are light: the worker imports them.
"""
