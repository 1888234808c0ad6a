-- The PostgreSQL role rmsops connects as: it can watch, never change.
--
--   psql "host=... dbname=rms user=<an admin>" -v password='<a long random password>' \
--        -f docs/postgres-monitoring-role.sql
--
-- Then store the password in Secrets Manager and name the secret in the environment file
-- (database.password_secret), or use RDS IAM authentication (database.iam_auth: true, and
-- GRANT rds_iam TO rmsops_monitor instead of a password).
-- tests/test_safety.py applies this file to a real PostgreSQL and checks what the role can do.

CREATE ROLE rmsops_monitor LOGIN PASSWORD :'password' CONNECTION LIMIT 3;

-- pg_stat_activity with every session's query text, pg_stat_statements, pg_locks, table and
-- index statistics and sizes: what the database checks read. No table privileges at all.
GRANT pg_monitor TO rmsops_monitor;
GRANT CONNECT ON DATABASE rms TO rmsops_monitor;

-- Belt and braces: rmsops also sets these itself on every session it opens.
ALTER ROLE rmsops_monitor SET default_transaction_read_only = on;
ALTER ROLE rmsops_monitor SET statement_timeout = '15s';
ALTER ROLE rmsops_monitor SET lock_timeout = '2s';
ALTER ROLE rmsops_monitor SET idle_in_transaction_session_timeout = '60s';

-- db.queries.slow needs the pg_stat_statements extension in this database (created once by an
-- admin; on RDS add it to shared_preload_libraries in the parameter group first):
--   CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
-- Its EXPLAIN of the slowest statement needs SELECT on the tables that statement reads; without
-- it the check still reports the statement and says the plan could not be shown. To allow it:
--   GRANT SELECT ON ALL TABLES IN SCHEMA public TO rmsops_monitor;
