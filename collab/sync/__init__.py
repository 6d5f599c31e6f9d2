"""CRDT documents: y-websocket rooms over pycrdt, a durable Postgres update log with
history, and a mirror of every document to its file in the project directory."""
