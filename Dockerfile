# One image for the four services and the console; the compose file picks which by its command.
FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY requirements.lock pyproject.toml README.md ./
RUN pip install -r requirements.lock
COPY shared ./shared
COPY services ./services
COPY deploy ./deploy
COPY console ./console
COPY data ./data
RUN pip install --no-deps . && useradd --system --uid 10001 carecrm
USER carecrm
ENV ENVIRONMENT=production HTTP_HOST=0.0.0.0 LOG_FORMAT=json
CMD ["python", "-m", "services.tiering"]
