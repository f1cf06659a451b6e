"""Golden vectors this implementation produces, and the checker for any vectors folder."""
