"""Text columns (`type: text` in the schema): the words they are read as, and their checks and profile."""
