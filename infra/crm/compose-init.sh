#!/bin/bash
# docker-compose only: load the CRM schema and create the capture user with the password from the environment.
set -euo pipefail
mysql -uroot -p"$MYSQL_ROOT_PASSWORD" "$MYSQL_DATABASE" < /schema/crm-schema.sql
mysql -uroot -p"$MYSQL_ROOT_PASSWORD" <<SQL
CREATE USER 'tidemark_capture'@'%' IDENTIFIED BY '${TIDEMARK_CRM_CAPTURE_PASSWORD}';
GRANT SELECT, RELOAD, SHOW DATABASES, REPLICATION SLAVE, REPLICATION CLIENT, LOCK TABLES ON *.* TO 'tidemark_capture'@'%';
SQL
mysql -uroot -p"$MYSQL_ROOT_PASSWORD" <<SQL
CREATE USER 'tidemark_writeback'@'%' IDENTIFIED BY '${TIDEMARK_CRM_WRITEBACK_PASSWORD}';
GRANT SELECT, UPDATE (erp_customer_id, credit_status, lifecycle_status, tidemark_version) ON crm.accounts TO 'tidemark_writeback'@'%';
SQL
