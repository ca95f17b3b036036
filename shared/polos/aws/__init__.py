"""AWS plumbing: settings and clients, chunked batch calls with retries, logs and metrics."""
