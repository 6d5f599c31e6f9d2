"""Projects: records, membership, and each project's directory under the data dir."""
