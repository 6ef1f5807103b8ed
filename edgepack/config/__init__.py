"""The inference config: schema (frozen dataclasses, validated by field path) and loading (the only YAML/JSON
reading)."""
