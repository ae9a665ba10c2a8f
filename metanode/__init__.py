"""The metadata server: users, namespaces, files, revisions and journals over CockroachDB/PostgreSQL."""
