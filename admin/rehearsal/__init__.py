"""Rehearsals: the exact plan an Apply would run, on a scratch copy of the target's data.

- ``scratch``: the scratch database (its name, free disk, restore of a verified backup with
  parallel pg_restore or a file copy on SQLite, and its drop);
- ``probe``: what the run is measured with (per statement: duration, rows, locks held; per
  step: ACCESS EXCLUSIVE hold times, rewrites, indexes built, WAL, size);
- ``catalog``: a schema snapshot and its differences (the round trip's proof);
- ``handler``: the worker's ``rehearsal`` job;
- ``records``: rehearsal rows and reports in the store, and the newest one matching a plan;
- ``actions``: the request (web, API, CLI) and the REQUIRE_REHEARSAL check before an Apply.

The target itself is only read (its revision, its size); everything runs on the copy.
"""
