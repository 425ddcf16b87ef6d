from django.contrib import admin
from django.urls import include, path

from chat import ops_views

urlpatterns = [
    # Before the admin: its catch-all would answer /admin/dashboard/ otherwise.
    path("admin/dashboard/", ops_views.dashboard_page, name="ripple_dashboard"),
    path("admin/", admin.site.urls),
    path("", include("chat.urls")),
]
