"""Routes under /api/ for schedules; filled in by the scheduling work."""

urlpatterns: list = []
