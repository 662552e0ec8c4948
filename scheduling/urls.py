"""Routes under /api/ for schedules: /api/schedules/ and /api/schedules/<id>/{run,pause,resume}/."""

from rest_framework.routers import SimpleRouter

from scheduling.api import ScheduleViewSet

router = SimpleRouter()
router.register("schedules", ScheduleViewSet, basename="schedule")

urlpatterns = router.urls
