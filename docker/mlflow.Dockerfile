# The team's MLflow server: tracking and registry on PostgreSQL, artifacts proxied to S3-compatible
# storage (docker/compose.yaml). mlflow and boto3 at the versions of requirements.lock (a test checks).
FROM python:3.11-slim
RUN pip install --no-cache-dir mlflow==3.17.2 boto3==1.43.117 psycopg2-binary==2.9.13
RUN useradd --uid 10001 --create-home --shell /usr/sbin/nologin mlflow
USER mlflow
EXPOSE 5000
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:5000/health', timeout=4)"]
