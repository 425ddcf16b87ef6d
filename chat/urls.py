from django.urls import path

from . import ops_views, sse, views

app_name = "chat"

urlpatterns = [
    path("", views.index, name="index"),
    path("name/", views.guest_name, name="guest_name"),
    path("rooms/<str:slug>/", views.room, name="room"),
    path("echo/", views.echo, name="echo"),
    path("sse/chat/send/", sse.send_frame, name="sse_send"),
    path("favicon.ico", views.favicon, name="favicon"),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", ops_views.readyz, name="readyz"),
    path("metrics", ops_views.metrics, name="metrics"),
]
