"""Dashboard pages (/, /jobs/<id>/, /create/); filled in by the dashboard work."""

urlpatterns: list = []
