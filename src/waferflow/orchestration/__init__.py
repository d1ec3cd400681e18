"""Orchestration helpers behind the Airflow DAGs in ``dags/`` (importable without Airflow)."""
