"""The `kadn` commands of the data side: argument parsing and one line of output around the library calls."""
