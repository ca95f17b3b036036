"""The HTTP API: the resolver and request path (`app`), routes per area (`events`, `runs`), API keys (`keys`)
and error types (`errors`). Importing the package loads none of them."""
