# One image for the four services; compose picks the service with `command: ["<name>"]`:
#   docker build -t checkout-suite . && docker run -p 8002:8002 checkout-suite warehouse
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY checkout_suite ./checkout_suite
COPY servicekit ./servicekit
COPY orchestrator ./orchestrator
COPY warehouse_service ./warehouse_service
COPY rewards_service ./rewards_service
COPY email_service ./email_service
RUN pip install . && rm -rf /src

# Not root; /app/data holds the SQLite files when no DATABASE_URL names another database.
RUN useradd --create-home --uid 10001 --user-group app \
    && mkdir -p /app/data && chown app:app /app/data
WORKDIR /app
USER app

# Listen on every interface inside the container; PORT defaults to the service's own (8000–8003).
ENV HOST=0.0.0.0
EXPOSE 8000 8001 8002 8003
ENTRYPOINT ["checkout-suite", "serve"]
CMD ["orchestrator"]
