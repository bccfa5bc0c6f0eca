#!/bin/bash
# docker-compose only: load the ERP schema and create the capture role with the password from the environment.
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" -f /schema/erp-schema.sql
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v pw="$TIDEMARK_ERP_CAPTURE_PASSWORD" <<'SQL'
CREATE ROLE tidemark_capture LOGIN REPLICATION PASSWORD :'pw';
GRANT USAGE ON SCHEMA erp TO tidemark_capture;
GRANT SELECT ON ALL TABLES IN SCHEMA erp TO tidemark_capture;
SQL
# The operational database the dataflow writes customer_360 into, owned by its own role.
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" -v pw="$TIDEMARK_OPS_PASSWORD" <<'SQL'
CREATE ROLE tidemark_ops LOGIN PASSWORD :'pw';
CREATE DATABASE tidemark OWNER tidemark_ops;
SQL
PGPASSWORD="$TIDEMARK_OPS_PASSWORD" psql -v ON_ERROR_STOP=1 -h localhost --username tidemark_ops --dbname tidemark \
  -f /schema/customer_360.sql
