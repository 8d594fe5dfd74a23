-- Runs once, when the timescaledb service initializes an empty data volume, as POSTGRES_USER
-- (nextday) connected to POSTGRES_DB (nextday), the store's database.
-- The image's own init scripts have already installed the timescaledb extension there (the
-- store's time-series tables become hypertables); IF NOT EXISTS keeps this line harmless.
CREATE EXTENSION IF NOT EXISTS timescaledb;

-- The MLflow tracking server's backend store (runs, metrics, Model Registry). From template0:
-- MLflow's tables need no TimescaleDB, which the image also puts into template1.
CREATE DATABASE mlflow OWNER nextday TEMPLATE template0;

-- Optuna studies shared by tune workers:
--   tune.storage=postgresql+psycopg2://nextday@timescaledb:5432/optuna
CREATE DATABASE optuna OWNER nextday TEMPLATE template0;
