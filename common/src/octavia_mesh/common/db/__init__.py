"""The database: models, engine and migrations, shared by the services that own Octavia's data."""
