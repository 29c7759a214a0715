"""The data side, in layers (each imports only the layers listed before it):

- `errors`, `io`, `redact`: one-line errors, checked file reading and atomic writing, URLs with secrets masked;
- `film/`: the film record (fields, checks, the merge rule) and the store (SQLAlchemy);
- `params`, `registry`, `groups`: params.yaml as typed sections, the models' registry, the feature groups' specs;
- `exchange/`: films in and out of the store as files (import layouts, export formats, the snapshot);
- `features/`: the cleaning rules, the cleaned table, the encoded feature groups;
- `commands/`: the `kadn` commands of the data side, thin argument parsing around the library above;
- `cli`: the `kadn` entry point, its table of commands (the models' are in `models.stages` and `models.serving`).
"""
