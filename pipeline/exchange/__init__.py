"""Films in and out of the store as files: import layouts, export formats, the snapshot."""
