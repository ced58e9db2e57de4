"""The process: the server with its graceful drain, worker processes and logging."""
