"""REST API v1 (DESIGN.md "REST API"): dependencies, error mapping, routes."""
