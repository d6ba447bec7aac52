"""The web care console: a client of the four services' HTTP APIs, served beside them."""
