"""The import command's service: files read into changes, COPY on PostgreSQL, progress."""
