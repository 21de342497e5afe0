"""brainfm.preprocessing stage."""
