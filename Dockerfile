FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY bridge bridge
COPY sandbox sandbox
COPY tasks tasks
COPY workers workers
RUN pip install --no-cache-dir .
USER nobody
