"""Templates of generated Functions files; read as files by the packagers (``string.Template`` placeholders)."""
