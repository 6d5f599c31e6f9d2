"""Declarative table subscriptions: schema/ loaded and checked, query-by-example over /ws,
and changefeeds from the PostgreSQL change log."""
