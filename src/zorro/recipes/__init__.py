"""Recipes: complete jobs built from the library (the AV-digits demo)."""
