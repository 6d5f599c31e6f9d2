"""The browser app: index.html for every client route, hashed assets, security headers."""
