"""Reader studies: human-versus-AI comparisons, recorded read by read.

- :mod:`~radreview.readerstudy.schema` / ``migrations/``: the tables (SQLAlchemy 2.0, Alembic),
  the same on SQLite (default, WAL) and PostgreSQL (several workstations);
- :mod:`~radreview.readerstudy.db`: opening a database and migrating it on open;
- :mod:`~radreview.readerstudy.design`: case list, question, reading mode, AI outputs, sham AI,
  readers and their randomised order;
- :mod:`~radreview.readerstudy.reading`: :func:`sign_in` ▸ :class:`ReaderSession`, the only
  door a reader has: own assignment and own reads, append-only, idempotent saves; sign-in
  throttling and lockout;
- :mod:`~radreview.readerstudy.security`, :mod:`~radreview.readerstudy.identifiers`: PINs and the
  sign-in policy; what reader codes, case ids and texts may contain;
- :mod:`~radreview.readerstudy.audit`: the hash-chained audit log and :func:`verify_study_record`;
- :mod:`~radreview.readerstudy.roles`: PostgreSQL login roles for readers (privileges, row-level
  security in migration 0002);
- :mod:`~radreview.readerstudy.coordinator`: the coordinator's view (truth, all reads, progress);
- :mod:`~radreview.readerstudy.stats`, :mod:`~radreview.readerstudy.export`,
  :mod:`~radreview.readerstudy.report`: statistics (via :mod:`radreview.metrics`), exports, report;
- :mod:`~radreview.readerstudy.scripted_reader`: a scripted reader for rehearsals and tests.

A SQLite study file means one trusted operator; see ``docs/security_readerstudy.md``.
No Qt here; the reading window is :mod:`radreview.gui.reading`.
"""
