from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from chat import ops_views

urlpatterns = [
    # Before the admin: its catch-all would answer /admin/dashboard/ otherwise.
    path("admin/dashboard/", ops_views.dashboard_page, name="ripple_dashboard"),
    path("admin/", admin.site.urls),
    # Django's own views; the page is chat/templates/registration/login.html. Logout is POST only.
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", include("chat.urls")),
]
