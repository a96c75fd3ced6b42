"""Service layer: plain functions over a Session. Routes and the CLI call these; they hold no queries."""
