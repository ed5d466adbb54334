"""The Hub-compatible mirror server."""
