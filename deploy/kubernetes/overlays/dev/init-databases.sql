-- Run once by the postgres image on an empty volume (/docker-entrypoint-initdb.d/):
-- one database per service, as each service owns its data and nothing else.
CREATE DATABASE orchestrator;
CREATE DATABASE email;
CREATE DATABASE warehouse;
CREATE DATABASE rewards;
