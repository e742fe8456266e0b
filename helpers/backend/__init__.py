"""The backend: which server answers (config), the client (client), the embedded model (embedded)."""
