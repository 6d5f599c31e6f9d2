"""The /ws endpoint: JSON frames carrying table queries, feed cancels and calls."""
