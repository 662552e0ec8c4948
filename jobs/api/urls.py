"""Routes under /api/ (and /metrics) for jobs; filled in by the API work."""

urlpatterns: list = []
