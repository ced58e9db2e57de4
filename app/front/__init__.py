"""What every protocol edge shares: the door (admission, readiness, drain), the API key, request ids and the
access log line, and the HTTP plumbing both HTTP edges use (app/front/web.py). It imports the engine only
through its client seam (app/engine/client.py)."""
