from __future__ import annotations

from django.urls import path

from apps.evaluation import views

app_name = "evaluation"

urlpatterns = [
    path("", views.evaluation_list, name="list"),
    path("import/", views.taskset_import, name="import"),
    path("sample/", views.taskset_sample, name="sample"),
    path("sets/<int:task_set_id>/delete/", views.taskset_delete, name="taskset_delete"),
    path("estimate/", views.run_estimate, name="estimate"),
    path("start/", views.run_start, name="start"),
    path("<int:run_id>/", views.run_detail, name="run"),
    path("<int:run_id>/progress/", views.run_progress, name="progress"),
    path("<int:run_id>/tasks/<int:task_id>/", views.run_task, name="task"),
    path("<int:run_id>/export.csv", views.run_export_csv, name="export_csv"),
    path("<int:run_id>/export.json", views.run_export_json, name="export_json"),
    path("<int:run_id>/cancel/", views.run_cancel, name="cancel"),
    path("<int:run_id>/resume/", views.run_resume, name="resume"),
    path("<int:run_id>/delete/", views.run_delete, name="delete"),
    path("<int:run_id>/share/", views.share_create, name="share_create"),
    path("<int:run_id>/share/<int:link_id>/revoke/", views.share_revoke, name="share_revoke"),
    path("s/<str:token>/", views.shared_run, name="shared"),
    path("s/<str:token>/tasks/<int:task_id>/", views.shared_task, name="shared_task"),
]
