"""Accounts, password hashing, sessions, API keys and sign-in rate limits."""
