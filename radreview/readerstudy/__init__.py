"""Reader studies: human-versus-AI comparisons, recorded read by read.

- :mod:`~radreview.readerstudy.schema` / ``migrations/``: the tables (SQLAlchemy 2.0, Alembic),
  the same on SQLite (default, WAL) and PostgreSQL (several workstations);
- :mod:`~radreview.readerstudy.db`: opening a database and migrating it on open;
- :mod:`~radreview.readerstudy.design`: case list, question, reading mode, AI outputs, sham AI,
  readers and their randomised order;
- :mod:`~radreview.readerstudy.reading`: :func:`sign_in` ▸ :class:`ReaderSession`, the only
  door a reader has: own assignment and own reads, append-only, idempotent saves;
- :mod:`~radreview.readerstudy.coordinator`: the coordinator's view (truth, all reads, progress);
- :mod:`~radreview.readerstudy.stats`, :mod:`~radreview.readerstudy.export`,
  :mod:`~radreview.readerstudy.report`: statistics (via :mod:`radreview.metrics`), exports, report;
- :mod:`~radreview.readerstudy.scripted_reader`: a scripted reader for rehearsals and tests.

No Qt here; the reading window is :mod:`radreview.gui.reading`.
"""
