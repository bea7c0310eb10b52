"""The web history viewer: a single-page app over the REST API (service/viewer/static/)."""
