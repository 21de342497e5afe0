"""brainfm.downstream stage."""
