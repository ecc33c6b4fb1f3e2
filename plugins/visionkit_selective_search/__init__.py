"""visionkit built-in plugin (placeholder until implemented)."""
