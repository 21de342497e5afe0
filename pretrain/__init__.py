"""brainfm.pretrain stage."""
