"""The data side: the film record, the store, import and export, the snapshot, clean, encode and metrics stages."""
