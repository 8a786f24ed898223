"""Where environments run. Providers import nothing of ours except `providers.base` and `errors`."""
