from __future__ import annotations

from django.urls import path

from apps.chat import views

app_name = "chat"

urlpatterns = [
    path("", views.home, name="home"),
    path("c/new/", views.conversation_new, name="new"),
    path("c/<int:conversation_id>/", views.conversation_detail, name="conversation"),
    path("c/<int:conversation_id>/send/", views.conversation_send, name="send"),
    path("c/<int:conversation_id>/rename/", views.conversation_rename, name="rename"),
    path("c/<int:conversation_id>/item/", views.sidebar_item, name="sidebar_item"),
    path("c/<int:conversation_id>/delete/", views.conversation_delete, name="delete"),
    path("c/<int:conversation_id>/export.<str:fmt>", views.conversation_export_file, name="export"),
    path("search/", views.conversation_search, name="search"),
    path("c/<int:conversation_id>/share/", views.share_create, name="share_create"),
    path("c/<int:conversation_id>/share/<int:link_id>/revoke/", views.share_revoke, name="share_revoke"),
    path("s/<str:token>/", views.shared_conversation, name="shared"),
    path("s/<str:token>/export.<str:fmt>", views.shared_export_file, name="shared_export"),
]
