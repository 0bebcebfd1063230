"""SQL schema files for the history store, one per version."""
