# The image for Docker and Kubernetes work pools (prefect.yaml): the project installed at /opt/augment.
# docker build -t augment:latest .
FROM python:3.11-slim
WORKDIR /opt/augment
COPY pyproject.toml README.md ./
COPY pipeline pipeline
COPY flows flows
RUN pip install --no-cache-dir -e .
ENV PREFECT_SERVER_ANALYTICS_ENABLED=false DVC_NO_ANALYTICS=1 OMP_NUM_THREADS=1
