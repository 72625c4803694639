"""One thin module per `orpheus` command: parse options, call the library, render the result."""
